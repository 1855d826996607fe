/* SPDX-License-Identifier: GPL-2.0-or-later */
/* -kernel: loads a RISC-V ELF64 executable (every header field validated, every segment
 * inside RAM) or, for anything without the ELF magic, a raw image at the start of RAM. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hw-internal.h"
#include "qs-internal.h"

enum {
    EI_CLASS = 4, EI_DATA = 5, EI_VERSION = 6,
    ELFCLASS64 = 2, ELFDATA2LSB = 1, EV_CURRENT = 1,
    ET_EXEC = 2, EM_RISCV = 243, PT_LOAD = 1,
    EHDR_SIZE = 64, PHDR_SIZE = 56, MAX_PHNUM = 1024,
};

static uint16_t le16(const uint8_t *p) { return p[0] | p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static bool fail(GError **errp, const char *path, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static bool fail(GError **errp, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "-kernel %s: %s", path, msg);
    return false;
}

static bool read_at(int fd, void *buf, size_t len, uint64_t off, const char *path,
                    const char *what, GError **errp)
{
    uint8_t *b = buf;
    while (len) {
        ssize_t n = pread(fd, b, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            return fail(errp, path, "cannot read %s at offset %" G_GUINT64_FORMAT ": %s", what,
                        off, n < 0 ? g_strerror(errno) : "unexpected end of file");
        }
        b += n;
        off += n;
        len -= n;
    }
    return true;
}

/* Does [addr, addr+len) lie inside [base, base+size)? (overflow-safe) */
static bool inside(uint64_t addr, uint64_t len, uint64_t base, uint64_t size)
{
    return addr >= base && addr - base <= size && len <= size - (addr - base);
}

static bool load_elf(int fd, uint64_t fsize, const uint8_t *eh, const char *path, void *ram,
                     uint64_t ram_base, uint64_t ram_size, uint64_t *entry, GError **errp)
{
    if (fsize < EHDR_SIZE) {
        return fail(errp, path, "ELF header truncated: file is %" G_GUINT64_FORMAT " bytes, "
                    "the header needs 64", fsize);
    }
    if (eh[EI_CLASS] != ELFCLASS64) {
        return fail(errp, path, "ELF field EI_CLASS is %u, expected 2 (ELFCLASS64)", eh[EI_CLASS]);
    }
    if (eh[EI_DATA] != ELFDATA2LSB) {
        return fail(errp, path, "ELF field EI_DATA is %u, expected 1 (little-endian)", eh[EI_DATA]);
    }
    if (eh[EI_VERSION] != EV_CURRENT) {
        return fail(errp, path, "ELF field EI_VERSION is %u, expected 1", eh[EI_VERSION]);
    }
    uint16_t type = le16(eh + 16), machine = le16(eh + 18);
    uint32_t version = le32(eh + 20);
    uint64_t e_entry = le64(eh + 24), phoff = le64(eh + 32);
    uint16_t ehsize = le16(eh + 52), phentsize = le16(eh + 54), phnum = le16(eh + 56);
    if (type != ET_EXEC) return fail(errp, path, "ELF field e_type is %u, expected 2 (ET_EXEC)", type);
    if (machine != EM_RISCV) {
        return fail(errp, path, "ELF field e_machine is %u, expected 243 (EM_RISCV)", machine);
    }
    if (version != EV_CURRENT) return fail(errp, path, "ELF field e_version is %u, expected 1", version);
    if (ehsize != EHDR_SIZE) return fail(errp, path, "ELF field e_ehsize is %u, expected 64", ehsize);
    if (phentsize != PHDR_SIZE) {
        return fail(errp, path, "ELF field e_phentsize is %u, expected 56", phentsize);
    }
    if (phnum == 0 || phnum > MAX_PHNUM) {
        return fail(errp, path, "ELF field e_phnum is %u, expected 1 to %d", phnum, MAX_PHNUM);
    }
    if (!inside(phoff, (uint64_t)phnum * PHDR_SIZE, 0, fsize)) {
        return fail(errp, path, "ELF program headers (e_phoff 0x%" G_GINT64_MODIFIER "x, %u "
                    "entries) extend beyond the end of the file (%" G_GUINT64_FORMAT " bytes)",
                    phoff, phnum, fsize);
    }
    if (!inside(e_entry, 1, ram_base, ram_size)) {
        return fail(errp, path, "ELF field e_entry 0x%" G_GINT64_MODIFIER "x is outside RAM "
                    "(0x%" G_GINT64_MODIFIER "x-0x%" G_GINT64_MODIFIER "x)", e_entry, ram_base,
                    ram_base + ram_size - 1);
    }
    g_autofree uint8_t *ph = g_malloc((size_t)phnum * PHDR_SIZE);
    if (!read_at(fd, ph, (size_t)phnum * PHDR_SIZE, phoff, path, "program headers", errp)) return false;
    /* validate every segment before touching RAM */
    unsigned loads = 0;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *p = ph + i * PHDR_SIZE;
        if (le32(p) != PT_LOAD) continue;
        uint64_t off = le64(p + 8), paddr = le64(p + 24), filesz = le64(p + 32), memsz = le64(p + 40);
        if (filesz > memsz) {
            return fail(errp, path, "program header %u: p_filesz 0x%" G_GINT64_MODIFIER "x is "
                        "larger than p_memsz 0x%" G_GINT64_MODIFIER "x", i, filesz, memsz);
        }
        if (!inside(off, filesz, 0, fsize)) {
            return fail(errp, path, "program header %u: p_offset 0x%" G_GINT64_MODIFIER "x + "
                        "p_filesz 0x%" G_GINT64_MODIFIER "x is beyond the end of the file "
                        "(%" G_GUINT64_FORMAT " bytes)", i, off, filesz, fsize);
        }
        if (!inside(paddr, memsz, ram_base, ram_size)) {
            return fail(errp, path, "program header %u: segment 0x%" G_GINT64_MODIFIER "x+0x%"
                        G_GINT64_MODIFIER "x (p_paddr+p_memsz) does not fit in RAM (0x%"
                        G_GINT64_MODIFIER "x-0x%" G_GINT64_MODIFIER "x)", i, paddr, memsz,
                        ram_base, ram_base + ram_size - 1);
        }
        loads++;
    }
    if (!loads) return fail(errp, path, "ELF file has no PT_LOAD segment");
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *p = ph + i * PHDR_SIZE;
        if (le32(p) != PT_LOAD) continue;
        uint64_t off = le64(p + 8), paddr = le64(p + 24), filesz = le64(p + 32), memsz = le64(p + 40);
        uint8_t *dst = (uint8_t *)ram + (paddr - ram_base);
        g_autofree char *what = g_strdup_printf("segment %u", i);
        if (filesz && !read_at(fd, dst, filesz, off, path, what, errp)) return false;
        memset(dst + filesz, 0, memsz - filesz);
    }
    *entry = e_entry;
    return true;
}

bool qs_load_kernel(const char *path, void *ram, uint64_t ram_base, uint64_t ram_size,
                    uint64_t *entry, GError **errp)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(errp, path, "cannot open: %s", g_strerror(errno));
    struct stat st;
    bool ok = false;
    if (fstat(fd, &st) < 0) {
        fail(errp, path, "cannot stat: %s", g_strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(errp, path, "not a regular file");
        goto out;
    }
    uint64_t fsize = st.st_size;
    uint8_t eh[EHDR_SIZE] = { 0 };
    uint64_t head = MIN(fsize, (uint64_t)EHDR_SIZE);
    if (head && !read_at(fd, eh, head, 0, path, "header", errp)) goto out;
    if (fsize >= 4 && !memcmp(eh, "\177ELF", 4)) {
        ok = load_elf(fd, fsize, eh, path, ram, ram_base, ram_size, entry, errp);
        goto out;
    }
    if (fsize == 0) {
        fail(errp, path, "file is empty");
        goto out;
    }
    if (fsize > ram_size) {
        fail(errp, path, "raw image of %" G_GUINT64_FORMAT " bytes does not fit in RAM "
             "(%" G_GUINT64_FORMAT " bytes)", fsize, ram_size);
        goto out;
    }
    ok = read_at(fd, ram, fsize, 0, path, "image", errp);
    *entry = ram_base;
out:
    close(fd);
    return ok;
}
