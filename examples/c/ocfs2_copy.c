/*
 * ocfs2_copy: copy files and trees into and out of an OCFS2 volume through the C API of
 * ocfs2-rs (include/ocfs2rs.h), and list or make directories.
 *
 *   ocfs2_copy IMAGE in HOSTPATH /path/in/volume     copy a file or a tree in
 *   ocfs2_copy IMAGE out /path/in/volume HOSTPATH    copy a file or a tree out
 *   ocfs2_copy IMAGE ls /dir                         one line per entry: type size name
 *   ocfs2_copy IMAGE mkdir /dir
 *
 * Regular files, directories and symbolic links are copied with their permission bits.
 * Library warnings and errors are printed to stderr through the log callback. Exit status 0
 * on success, 1 on any failure (with the library's message).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ocfs2rs.h"

#define CHUNK (1 << 20)

static const char *prog = "ocfs2_copy";

/* Prints what failed with the library's message for negative `rc`. Returns -1. */
static int fail(const char *what, const char *path, int64_t rc) {
    fprintf(stderr, "%s: %s %s: %s (errno %lld)\n", prog, what, path, ocfs2rs_last_error(), (long long)-rc);
    return -1;
}

static int fail_host(const char *what, const char *path) {
    fprintf(stderr, "%s: %s %s: %s\n", prog, what, path, strerror(errno));
    return -1;
}

static void log_to_stderr(int level, const char *target, const char *message, void *user_data) {
    static const char *names[] = {"off", "error", "warn", "info", "debug", "trace"};
    (void)user_data;
    fprintf(stderr, "%s: [%s %s] %s\n", prog, level >= 0 && level <= 5 ? names[level] : "?", target, message);
}

/* `a` + "/" + `b` into a fresh buffer (the caller frees it), or NULL. */
static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] == '/';
    char *out = malloc(la + lb + 2);
    if (out == NULL)
        return NULL;
    memcpy(out, a, la);
    if (!slash)
        out[la++] = '/';
    memcpy(out + la, b, lb + 1);
    return out;
}

static char type_letter(uint32_t mode) {
    switch (mode & S_IFMT) {
    case S_IFREG: return 'f';
    case S_IFDIR: return 'd';
    case S_IFLNK: return 'l';
    case S_IFCHR: return 'c';
    case S_IFBLK: return 'b';
    case S_IFIFO: return 'p';
    case S_IFSOCK: return 's';
    default: return '?';
    }
}

static int copy_file_in(ocfs2rs_volume *vol, const char *src, const char *dst, mode_t mode, char *buf) {
    int fd = open(src, O_RDONLY);
    if (fd < 0)
        return fail_host("open", src);
    ocfs2rs_file *f = NULL;
    int rc = ocfs2rs_open(vol, dst, OCFS2RS_O_WRONLY | OCFS2RS_O_CREAT | OCFS2RS_O_TRUNC, mode & 07777, &f);
    if (rc < 0) {
        close(fd);
        return fail("create", dst, rc);
    }
    int result = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0) {
            result = fail_host("read", src);
            break;
        }
        if (n == 0)
            break;
        int64_t w = ocfs2rs_write(f, buf, (size_t)n);
        if (w != n) {
            result = fail("write", dst, w < 0 ? w : -EIO);
            break;
        }
    }
    close(fd);
    rc = ocfs2rs_close(f);
    if (rc < 0 && result == 0)
        result = fail("close", dst, rc);
    if (result == 0) {
        rc = ocfs2rs_chmod(vol, dst, mode & 07777);
        if (rc < 0)
            result = fail("chmod", dst, rc);
    }
    return result;
}

static int copy_in(ocfs2rs_volume *vol, const char *src, const char *dst, char *buf) {
    struct stat st;
    if (lstat(src, &st) < 0)
        return fail_host("stat", src);
    if (S_ISREG(st.st_mode))
        return copy_file_in(vol, src, dst, st.st_mode, buf);
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(src, target, sizeof(target) - 1);
        if (n < 0)
            return fail_host("readlink", src);
        target[n] = '\0';
        int rc = ocfs2rs_symlink(vol, target, dst);
        return rc < 0 ? fail("symlink", dst, rc) : 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: skipping %s: not a file, directory or symbolic link\n", prog, src);
        return 0;
    }
    int rc = ocfs2rs_mkdir(vol, dst, st.st_mode & 07777);
    if (rc == -EEXIST || rc == -EBUSY) {
        /* Copying into a directory that exists (EBUSY: the root) is fine. */
        ocfs2rs_attr there;
        if (ocfs2rs_stat(vol, dst, &there) == 0 && S_ISDIR(there.mode))
            rc = 0;
    }
    if (rc < 0)
        return fail("mkdir", dst, rc);
    DIR *d = opendir(src);
    if (d == NULL)
        return fail_host("opendir", src);
    int result = 0;
    struct dirent *e;
    while (result == 0 && (errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *s = join(src, e->d_name), *t = join(dst, e->d_name);
        result = (s && t) ? copy_in(vol, s, t, buf) : -1;
        free(s);
        free(t);
    }
    if (result == 0 && errno != 0)
        result = fail_host("readdir", src);
    closedir(d);
    return result;
}

static int copy_file_out(ocfs2rs_volume *vol, const char *src, const char *dst, uint32_t mode, char *buf) {
    ocfs2rs_file *f = NULL;
    int rc = ocfs2rs_open(vol, src, OCFS2RS_O_RDONLY, 0, &f);
    if (rc < 0)
        return fail("open", src, rc);
    int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, mode & 07777);
    if (fd < 0) {
        ocfs2rs_close(f);
        return fail_host("create", dst);
    }
    int result = 0;
    for (;;) {
        int64_t n = ocfs2rs_read(f, buf, CHUNK);
        if (n < 0) {
            result = fail("read", src, n);
            break;
        }
        if (n == 0)
            break;
        for (int64_t done = 0; done < n;) {
            ssize_t w = write(fd, buf + done, (size_t)(n - done));
            if (w < 0) {
                result = fail_host("write", dst);
                break;
            }
            done += w;
        }
        if (result != 0)
            break;
    }
    if (close(fd) < 0 && result == 0)
        result = fail_host("close", dst);
    rc = ocfs2rs_close(f);
    if (rc < 0 && result == 0)
        result = fail("close", src, rc);
    if (result == 0 && chmod(dst, mode & 07777) < 0)
        result = fail_host("chmod", dst);
    return result;
}

static int copy_out(ocfs2rs_volume *vol, const char *src, const char *dst, char *buf) {
    ocfs2rs_attr st;
    int rc = ocfs2rs_lstat(vol, src, &st);
    if (rc < 0)
        return fail("stat", src, rc);
    if (S_ISREG(st.mode))
        return copy_file_out(vol, src, dst, st.mode, buf);
    if (S_ISLNK(st.mode)) {
        char target[PATH_MAX];
        int64_t n = ocfs2rs_readlink(vol, src, target, sizeof(target));
        if (n < 0)
            return fail("readlink", src, n);
        if ((size_t)n >= sizeof(target)) {
            fprintf(stderr, "%s: %s: link target too long\n", prog, src);
            return -1;
        }
        return symlink(target, dst) < 0 ? fail_host("symlink", dst) : 0;
    }
    if (!S_ISDIR(st.mode)) {
        fprintf(stderr, "%s: skipping %s: not a file, directory or symbolic link\n", prog, src);
        return 0;
    }
    if (mkdir(dst, st.mode & 07777) < 0 && errno != EEXIST)
        return fail_host("mkdir", dst);
    ocfs2rs_dir *d = NULL;
    rc = ocfs2rs_opendir(vol, src, &d);
    if (rc < 0)
        return fail("opendir", src, rc);
    int result = 0;
    ocfs2rs_dirent e;
    while (result == 0 && (rc = ocfs2rs_readdir(d, &e)) == 1) {
        if (strcmp(e.name, ".") == 0 || strcmp(e.name, "..") == 0)
            continue;
        char *s = join(src, e.name), *t = join(dst, e.name);
        result = (s && t) ? copy_out(vol, s, t, buf) : -1;
        free(s);
        free(t);
    }
    if (result == 0 && rc < 0)
        result = fail("readdir", src, rc);
    ocfs2rs_closedir(d);
    return result;
}

static int list(ocfs2rs_volume *vol, const char *path) {
    ocfs2rs_dir *d = NULL;
    int rc = ocfs2rs_opendir(vol, path, &d);
    if (rc < 0)
        return fail("opendir", path, rc);
    int result = 0;
    ocfs2rs_dirent e;
    while ((rc = ocfs2rs_readdir(d, &e)) == 1) {
        char *full = join(path, e.name);
        if (full == NULL) {
            result = -1;
            break;
        }
        ocfs2rs_attr st;
        int src = ocfs2rs_lstat(vol, full, &st);
        if (src < 0) {
            result = fail("stat", full, src);
            free(full);
            break;
        }
        printf("%c %llu %s\n", type_letter(st.mode), (unsigned long long)st.size, e.name);
        free(full);
    }
    if (rc < 0)
        result = fail("readdir", path, rc);
    ocfs2rs_closedir(d);
    return result;
}

static int usage(void) {
    fprintf(stderr,
            "usage: %s IMAGE in HOSTPATH /path/in/volume\n"
            "       %s IMAGE out /path/in/volume HOSTPATH\n"
            "       %s IMAGE ls /dir\n"
            "       %s IMAGE mkdir /dir\n",
            prog, prog, prog, prog);
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 4)
        return usage();
    const char *image = argv[1], *cmd = argv[2];
    int writes = strcmp(cmd, "in") == 0 || strcmp(cmd, "mkdir") == 0;
    if ((strcmp(cmd, "in") == 0 || strcmp(cmd, "out") == 0) ? argc != 5 : argc != 4)
        return usage();
    if (!writes && strcmp(cmd, "out") != 0 && strcmp(cmd, "ls") != 0)
        return usage();

    ocfs2rs_set_log_level(OCFS2RS_LOG_WARN);
    ocfs2rs_set_log_callback(log_to_stderr, NULL);

    ocfs2rs_volume *vol = NULL;
    int rc = ocfs2rs_volume_open(image, writes ? OCFS2RS_VOLUME_WRITABLE : OCFS2RS_VOLUME_READONLY, &vol);
    if (rc < 0) {
        fail("open volume", image, rc);
        return 1;
    }
    char *buf = malloc(CHUNK);
    int result = -1;
    if (buf == NULL)
        fprintf(stderr, "%s: out of memory\n", prog);
    else if (strcmp(cmd, "in") == 0)
        result = copy_in(vol, argv[3], argv[4], buf);
    else if (strcmp(cmd, "out") == 0)
        result = copy_out(vol, argv[3], argv[4], buf);
    else if (strcmp(cmd, "ls") == 0)
        result = list(vol, argv[3]);
    else {
        rc = ocfs2rs_mkdir(vol, argv[3], 0755);
        result = rc < 0 ? fail("mkdir", argv[3], rc) : 0;
    }
    free(buf);
    rc = ocfs2rs_volume_close(vol);
    if (rc < 0 && result == 0)
        result = fail("close volume", image, rc);
    ocfs2rs_set_log_callback(NULL, NULL);
    return result == 0 ? 0 : 1;
}
