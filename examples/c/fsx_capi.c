/*
 * fsx_capi: a file system exerciser in the manner of xfstests' fsx, driving one file on an
 * OCFS2 volume through the C API of ocfs2-rs (include/ocfs2rs.h).
 *
 *   fsx_capi [-N ops] [-S seed] [-l maxlen] [-o maxoplen] [-F] [-H] [-z] [-v] IMAGE
 *
 * A seeded random sequence of pread/pwrite, lseek+read/write, ftruncate, fallocate (with and
 * without KEEP_SIZE), punch hole, zero range (with and without KEEP_SIZE), fsync/fdatasync and
 * close/reopen runs against /fsx.file, and against an in-memory model of what the file must
 * hold. Every read is compared with the model, and the size after every operation; the whole
 * file every 1000 operations, and once more after closing and reopening the volume. On a
 * mismatch it prints the seed, the last operations and the first differing bytes, and exits 1.
 * Defaults: 100000 operations, seed 1 (-S 0 picks one from the clock), files up to 256 KiB,
 * operations up to 64 KiB. As in fsx, -F leaves out fallocate, -H punch hole, -z zero range;
 * -v prints every operation.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ocfs2rs.h"

#define LOG_SIZE 1024
#define FILE_PATH "/fsx.file"

enum kind { READ, READ_SEQ, WRITE, WRITE_SEQ, TRUNCATE, FALLOCATE, PUNCH_HOLE, ZERO_RANGE, FSYNC, REOPEN, KINDS };

static const char *kind_names[KINDS] = {"pread",     "read",       "pwrite",     "write", "truncate",
                                        "fallocate", "punch_hole", "zero_range", "fsync", "reopen"};
/* How often each operation is drawn, out of the sum (0: left out). */
static unsigned kind_weights[KINDS] = {20, 5, 20, 5, 8, 8, 8, 8, 3, 1};

struct logged {
    uint64_t n;
    enum kind kind;
    uint64_t off, len;
    int flag; /* keep_size for fallocate/zero_range, fdatasync for fsync */
    uint64_t size_after;
};

static struct logged oplog[LOG_SIZE];
static uint64_t ops_done;
static uint64_t seed = 1;
static uint64_t rng_state;

static ocfs2rs_volume *vol;
static ocfs2rs_file *file;
static unsigned char *model; /* what the file holds; zero past `model_size` */
static unsigned char *scratch;
static uint64_t model_size;
static uint64_t max_len = 256 * 1024;
static uint64_t max_op_len = 64 * 1024;
static int verbose;

static uint64_t next_random(void) {
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) {
    return n == 0 ? 0 : next_random() % n;
}

static void print_log(void) {
    uint64_t first = ops_done > LOG_SIZE ? ops_done - LOG_SIZE : 0;
    fprintf(stderr, "last %" PRIu64 " operations (seed %" PRIu64 "):\n", ops_done - first, seed);
    for (uint64_t i = first; i < ops_done; i++) {
        const struct logged *l = &oplog[i % LOG_SIZE];
        fprintf(stderr, "%6" PRIu64 " %-10s off %#8" PRIx64 " len %#7" PRIx64 " %s -> size %#" PRIx64 "\n", l->n,
                kind_names[l->kind], l->off, l->len, l->flag ? (l->kind == FSYNC ? "data" : "keep") : "    ",
                l->size_after);
    }
}

static void die(const char *what, int64_t rc) {
    fprintf(stderr, "fsx_capi: op %" PRIu64 ": %s failed: %s (errno %" PRId64 ")\n", ops_done, what,
            ocfs2rs_last_error(), -rc);
    print_log();
    exit(1);
}

static void mismatch(const char *what, uint64_t off, const unsigned char *got, uint64_t len) {
    fprintf(stderr, "fsx_capi: op %" PRIu64 ": %s: data mismatch\n", ops_done, what);
    print_log();
    int shown = 0;
    for (uint64_t i = 0; i < len && shown < 16; i++) {
        if (got[i] != model[off + i]) {
            fprintf(stderr, "  offset %#" PRIx64 ": expected %#04x, read %#04x\n", off + i, model[off + i], got[i]);
            shown++;
        }
    }
    exit(1);
}

static void check_size(const char *what) {
    ocfs2rs_attr st;
    int rc = ocfs2rs_fstat(file, &st);
    if (rc < 0)
        die("fstat", rc);
    if (st.size != model_size) {
        fprintf(stderr, "fsx_capi: op %" PRIu64 ": after %s the size is %#" PRIx64 ", expected %#" PRIx64 "\n",
                ops_done, what, st.size, model_size);
        print_log();
        exit(1);
    }
}

static void check_range(const char *what, uint64_t off, uint64_t len) {
    int64_t n = ocfs2rs_pread(file, scratch, (size_t)len, (int64_t)off);
    if (n < 0)
        die(what, n);
    uint64_t expect = off >= model_size ? 0 : (model_size - off < len ? model_size - off : len);
    if ((uint64_t)n != expect) {
        fprintf(stderr, "fsx_capi: op %" PRIu64 ": %s at %#" PRIx64 " read %" PRId64 " bytes, expected %" PRIu64 "\n",
                ops_done, what, off, n, expect);
        print_log();
        exit(1);
    }
    if (memcmp(scratch, model + off, (size_t)n) != 0)
        mismatch(what, off, scratch, (uint64_t)n);
}

static void open_file(int flags) {
    int rc = ocfs2rs_open(vol, FILE_PATH, flags, 0644, &file);
    if (rc < 0)
        die("open", rc);
}

/* Zeroes the model in [from, to) clipped to the file. */
static void model_zero(uint64_t from, uint64_t to) {
    if (to > model_size)
        to = model_size;
    if (from < to)
        memset(model + from, 0, (size_t)(to - from));
}

static void one_op(void) {
    unsigned total = 0;
    for (int k = 0; k < KINDS; k++)
        total += kind_weights[k];
    uint64_t pick = below(total);
    enum kind kind = READ;
    for (int k = 0; k < KINDS; k++) {
        if (pick < kind_weights[k]) {
            kind = (enum kind)k;
            break;
        }
        pick -= kind_weights[k];
    }
    uint64_t off = below(max_len);
    uint64_t len = 1 + below(max_op_len);
    if (off + len > max_len)
        len = max_len - off;
    int flag = (int)below(2);
    int64_t rc = 0;

    struct logged *l = &oplog[ops_done % LOG_SIZE];
    l->n = ops_done;
    l->kind = kind;
    l->flag = flag;

    switch (kind) {
    case READ:
    case READ_SEQ:
        /* Mostly inside the file; one read in 16 anywhere, past the end included. */
        if (model_size > 0 && below(16) != 0)
            off = below(model_size);
        break;
    default:
        break;
    }
    l->off = off;
    l->len = len;
    if (verbose)
        fprintf(stderr, "%6" PRIu64 " %-10s off %#8" PRIx64 " len %#7" PRIx64 " flag %d\n", ops_done, kind_names[kind],
                off, len, flag);

    switch (kind) {
    case READ:
        check_range("pread", off, len);
        break;
    case READ_SEQ: {
        int64_t pos = ocfs2rs_lseek(file, (int64_t)off, OCFS2RS_SEEK_SET);
        if (pos != (int64_t)off)
            die("lseek", pos < 0 ? pos : -EIO);
        int64_t n = ocfs2rs_read(file, scratch, (size_t)len);
        if (n < 0)
            die("read", n);
        uint64_t expect = off >= model_size ? 0 : (model_size - off < len ? model_size - off : len);
        if ((uint64_t)n != expect) {
            fprintf(stderr, "fsx_capi: op %" PRIu64 ": read returned %" PRId64 ", expected %" PRIu64 "\n", ops_done, n,
                    expect);
            print_log();
            exit(1);
        }
        if (memcmp(scratch, model + off, (size_t)n) != 0)
            mismatch("read", off, scratch, (uint64_t)n);
        pos = ocfs2rs_lseek(file, 0, OCFS2RS_SEEK_CUR);
        if (pos != (int64_t)(off + (uint64_t)n))
            die("lseek after read", pos < 0 ? pos : -EIO);
        break;
    }
    case WRITE:
    case WRITE_SEQ: {
        for (uint64_t i = 0; i < len; i++)
            scratch[i] = (unsigned char)(next_random() | 1); /* never 0: holes would hide */
        int64_t n;
        if (kind == WRITE) {
            n = ocfs2rs_pwrite(file, scratch, (size_t)len, (int64_t)off);
        } else {
            int64_t pos = ocfs2rs_lseek(file, (int64_t)off, OCFS2RS_SEEK_SET);
            if (pos != (int64_t)off)
                die("lseek", pos < 0 ? pos : -EIO);
            n = ocfs2rs_write(file, scratch, (size_t)len);
        }
        if (n != (int64_t)len)
            die(kind_names[kind], n < 0 ? n : -EIO);
        memcpy(model + off, scratch, (size_t)len);
        if (off + len > model_size)
            model_size = off + len;
        break;
    }
    case TRUNCATE: {
        uint64_t size = below(max_len + 1);
        l->off = size;
        l->len = 0;
        rc = ocfs2rs_ftruncate(file, (int64_t)size);
        if (rc < 0)
            die("ftruncate", rc);
        model_zero(size, model_size);
        model_size = size;
        break;
    }
    case FALLOCATE:
        rc = ocfs2rs_fallocate(file, flag ? OCFS2RS_FALLOC_FL_KEEP_SIZE : 0, (int64_t)off, (int64_t)len);
        if (rc < 0)
            die("fallocate", rc);
        if (!flag && off + len > model_size)
            model_size = off + len;
        break;
    case PUNCH_HOLE:
        rc = ocfs2rs_fallocate(file, OCFS2RS_FALLOC_FL_PUNCH_HOLE | OCFS2RS_FALLOC_FL_KEEP_SIZE, (int64_t)off,
                               (int64_t)len);
        if (rc < 0)
            die("punch hole", rc);
        model_zero(off, off + len);
        break;
    case ZERO_RANGE:
        rc = ocfs2rs_fallocate(file, OCFS2RS_FALLOC_FL_ZERO_RANGE | (flag ? OCFS2RS_FALLOC_FL_KEEP_SIZE : 0),
                               (int64_t)off, (int64_t)len);
        if (rc < 0)
            die("zero range", rc);
        model_zero(off, off + len);
        if (!flag && off + len > model_size)
            model_size = off + len;
        break;
    case FSYNC:
        rc = flag ? ocfs2rs_fdatasync(file) : ocfs2rs_fsync(file);
        if (rc < 0)
            die(flag ? "fdatasync" : "fsync", rc);
        break;
    case REOPEN:
        rc = ocfs2rs_close(file);
        if (rc < 0)
            die("close", rc);
        open_file(OCFS2RS_O_RDWR);
        break;
    case KINDS:
        break;
    }
    l->size_after = model_size;
    ops_done++;
    check_size(kind_names[kind]);
    if (ops_done % 1000 == 0)
        check_range("whole-file check", 0, max_len);
}

static int usage(void) {
    fprintf(stderr, "usage: fsx_capi [-N ops] [-S seed] [-l maxlen] [-o maxoplen] [-F] [-H] [-z] [-v] IMAGE\n");
    return 2;
}

int main(int argc, char **argv) {
    uint64_t ops = 100000;
    int c;
    while ((c = getopt(argc, argv, "N:S:l:o:FHzv")) != -1) {
        switch (c) {
        case 'N': ops = strtoull(optarg, NULL, 0); break;
        case 'S': seed = strtoull(optarg, NULL, 0); break;
        case 'l': max_len = strtoull(optarg, NULL, 0); break;
        case 'o': max_op_len = strtoull(optarg, NULL, 0); break;
        case 'F': kind_weights[FALLOCATE] = 0; break;
        case 'H': kind_weights[PUNCH_HOLE] = 0; break;
        case 'z': kind_weights[ZERO_RANGE] = 0; break;
        case 'v': verbose = 1; break;
        default: return usage();
        }
    }
    if (optind + 1 != argc || max_len == 0 || max_op_len == 0)
        return usage();
    if (seed == 0)
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    rng_state = seed;
    const char *image = argv[optind];

    model = calloc(1, (size_t)max_len);
    scratch = malloc((size_t)(max_len > max_op_len ? max_len : max_op_len));
    if (model == NULL || scratch == NULL) {
        fprintf(stderr, "fsx_capi: out of memory\n");
        return 2;
    }
    int rc = ocfs2rs_volume_open(image, OCFS2RS_VOLUME_WRITABLE, &vol);
    if (rc < 0)
        die("volume open", rc);
    open_file(OCFS2RS_O_RDWR | OCFS2RS_O_CREAT | OCFS2RS_O_TRUNC);
    check_size("open");
    while (ops_done < ops)
        one_op();
    check_range("final check", 0, max_len);
    if ((rc = ocfs2rs_close(file)) < 0)
        die("close", rc);
    if ((rc = ocfs2rs_volume_close(vol)) < 0)
        die("volume close", rc);

    /* What reached the disk: the volume opened again, read-only. */
    rc = ocfs2rs_volume_open(image, OCFS2RS_VOLUME_READONLY, &vol);
    if (rc < 0)
        die("volume reopen", rc);
    open_file(OCFS2RS_O_RDONLY);
    check_size("reopen");
    check_range("check after reopening the volume", 0, max_len);
    if ((rc = ocfs2rs_volume_close(vol)) < 0) /* closes the file too */
        die("volume close", rc);
    printf("fsx_capi: %" PRIu64 " operations, seed %" PRIu64 ", final size %" PRIu64 ": all reads matched\n", ops_done,
           seed, model_size);
    free(model);
    free(scratch);
    return 0;
}
