//! Tests of the device layer on real files and in memory.

use super::*;
use std::sync::Arc;

fn temp_file(name: &str, size: u64) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("ocfs2-dev-{name}-{}", std::process::id()));
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    path
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn mem_device_reads_back_what_was_written_and_refuses_out_of_range() {
    let dev = MemDevice::new(8192);
    dev.write_at(100, b"hello").unwrap();
    let mut buf = [0u8; 5];
    dev.read_at(100, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert!(matches!(dev.read_at(8190, &mut buf), Err(DeviceError::OutOfRange { .. })));
    assert!(matches!(dev.read_at(u64::MAX - 1, &mut buf), Err(DeviceError::OutOfRange { .. })));
}

#[test]
fn direct_io_handles_unaligned_offsets_lengths_and_buffers() {
    let path = temp_file("direct", 1 << 20);
    let dev = FileDevice::open_with(&path, FileDeviceOptions { writable: true, direct: Some(true) }).unwrap();
    assert!(dev.is_direct());
    // Unaligned write spanning three pages, then unaligned reads of it and around it.
    let data = pattern(9000, 7);
    dev.write_at(4096 - 17, &data).unwrap();
    let mut back = vec![0u8; 9000];
    dev.read_at(4096 - 17, &mut back).unwrap();
    assert_eq!(back, data);
    let mut edge = vec![0xAAu8; 40];
    dev.read_at(4096 - 37, &mut edge).unwrap();
    assert_eq!(&edge[..20], &[0u8; 20], "bytes before the write stay zero");
    assert_eq!(&edge[20..], &data[..20]);
    // An aligned request from an unaligned buffer address goes through the bounce buffer.
    let mut odd = vec![0u8; 4096 + 1];
    dev.read_at(4096, &mut odd[1..]).unwrap();
    assert_eq!(&odd[1..], &data[17..17 + 4096]);
    dev.flush().unwrap();
    drop(dev);
    let plain = std::fs::read(&path).unwrap();
    assert_eq!(&plain[4096 - 17..4096 - 17 + 9000], &data[..]);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn read_only_file_device_refuses_writes() {
    let path = temp_file("ro", 4096);
    let dev = FileDevice::open(&path).unwrap();
    assert_eq!(dev.write_at(0, b"x"), Err(DeviceError::ReadOnly));
    assert_eq!(dev.len(), 4096);
    assert_eq!(dev.sector_size(), 512);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn fault_device_fails_the_chosen_read_and_write_with_eio() {
    let dev = FaultDevice::new(
        MemDevice::new(4096),
        FaultPlan::new().with(FaultKind::FailRead(1)).with(FaultKind::FailWrite(0)),
    );
    let err = dev.write_at(0, b"abc").unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    dev.write_at(0, b"abc").unwrap();
    let mut buf = [0u8; 3];
    dev.read_at(0, &mut buf).unwrap();
    assert_eq!(dev.read_at(0, &mut buf).unwrap_err().errno(), libc::EIO);
    dev.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"abc");
    assert_eq!(dev.injected(), 2);
}

#[test]
fn fault_device_range_faults_hit_only_overlapping_requests() {
    let dev = FaultDevice::new(
        MemDevice::new(8192),
        FaultPlan::new().with(FaultKind::FailReadRange { start: 1024, end: 2048 }),
    );
    let mut buf = [0u8; 512];
    dev.read_at(512, &mut buf).unwrap();
    assert!(dev.read_at(1000, &mut buf).is_err());
    dev.read_at(2048, &mut buf).unwrap();
}

#[test]
fn crash_point_drops_later_writes_and_can_tear_the_last() {
    let inner = Arc::new(MemDevice::new(4096));
    let dev = FaultDevice::new(
        inner.clone(),
        FaultPlan::new().with(FaultKind::CrashAfterWrite { last: 1, torn_bytes: Some(2) }),
    );
    dev.write_at(0, b"first").unwrap();
    dev.write_at(100, b"second").unwrap();
    dev.write_at(200, b"third").unwrap();
    let image = inner.to_bytes();
    assert_eq!(&image[0..5], b"first");
    assert_eq!(&image[100..106], b"se\0\0\0\0", "the crash write is torn after 2 bytes");
    assert_eq!(&image[200..205], &[0u8; 5], "writes after the crash are lost");
}

#[test]
fn stalled_writes_wait_until_the_plan_is_replaced() {
    let dev = Arc::new(FaultDevice::new(MemDevice::new(4096), FaultPlan::new().with(FaultKind::StallWrites)));
    let writer = {
        let dev = dev.clone();
        std::thread::spawn(move || dev.write_at(0, b"late").unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!writer.is_finished(), "the write must stall");
    assert_eq!(dev.inner().to_bytes()[..4], [0u8; 4]);
    dev.set_plan(FaultPlan::new());
    writer.join().unwrap();
    assert_eq!(&dev.inner().to_bytes()[..4], b"late");
}

#[test]
fn direct_io_transfers_whole_sectors_not_whole_pages() {
    // A one-sector write must not become a read-modify-write of the page around it: on a shared
    // disk that would write stale copies of other nodes' neighbouring heartbeat sectors back.
    // On a file of two sectors, any page-sized transfer would fail at the end of the file.
    let path = temp_file("sectors", 1024);
    let dev = FileDevice::open_with(&path, FileDeviceOptions { writable: true, direct: Some(true) }).unwrap();
    dev.write_at(512, &[0xBB; 512]).unwrap();
    dev.write_at(0, &[0xAA; 512]).unwrap();
    let mut back = vec![0u8; 1024];
    dev.read_at(0, &mut back).unwrap();
    assert!(back[..512].iter().all(|&x| x == 0xAA));
    assert!(back[512..].iter().all(|&x| x == 0xBB));
    std::fs::remove_file(path).unwrap();
}
