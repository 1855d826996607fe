/* SPDX-License-Identifier: GPL-2.0-or-later */
/* -kernel loader tests: a good ELF64 RISC-V image and raw image load; every malformed
 * header field and out-of-RAM segment is refused with a message naming file and field. */
#include <string.h>
#include <glib/gstdio.h>
#include "hw-internal.h"

#define RAM_BASE 0x80000000ull
#define RAM_SIZE 0x10000ull

static char *dir;
static uint8_t ram[RAM_SIZE];

static void put16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v); put16(p + 2, v >> 16); }
static void put64(uint8_t *p, uint64_t v) { put32(p, v); put32(p + 4, v >> 32); }

/* An ELF with two PT_LOAD segments: code (16 bytes at 0x80000000) and data with bss. */
typedef struct Elf {
    uint8_t b[64 + 2 * 56 + 32];
    size_t len;
} Elf;

static Elf good_elf(void)
{
    Elf e = { .len = sizeof(e.b) };
    uint8_t *h = e.b;
    memcpy(h, "\177ELF", 4);
    h[4] = 2; h[5] = 1; h[6] = 1;
    put16(h + 16, 2);            /* ET_EXEC */
    put16(h + 18, 243);          /* EM_RISCV */
    put32(h + 20, 1);
    put64(h + 24, RAM_BASE + 4); /* entry */
    put64(h + 32, 64);           /* phoff */
    put16(h + 52, 64);
    put16(h + 54, 56);
    put16(h + 56, 2);
    uint8_t *p = h + 64;
    put32(p, 1);
    put64(p + 8, 64 + 112);      /* offset */
    put64(p + 16, RAM_BASE);
    put64(p + 24, RAM_BASE);
    put64(p + 32, 16);
    put64(p + 40, 16);
    p += 56;
    put32(p, 1);
    put64(p + 8, 64 + 112 + 16);
    put64(p + 16, RAM_BASE + 0x1000);
    put64(p + 24, RAM_BASE + 0x1000);
    put64(p + 32, 16);
    put64(p + 40, 0x100);        /* bss after the 16 bytes */
    for (int i = 0; i < 32; i++) e.b[64 + 112 + i] = 0xa0 + i;
    return e;
}

static char *write_file(const char *name, const void *data, size_t len)
{
    char *path = g_build_filename(dir, name, NULL);
    g_assert_true(g_file_set_contents(path, data, len, NULL));
    return path;
}

static void test_good_elf(void)
{
    Elf e = good_elf();
    g_autofree char *path = write_file("good.elf", e.b, e.len);
    memset(ram, 0xff, sizeof(ram));
    uint64_t entry = 0;
    GError *err = NULL;
    g_assert_true(qs_load_kernel(path, ram, RAM_BASE, RAM_SIZE, &entry, &err));
    g_assert_no_error(err);
    g_assert_cmphex(entry, ==, RAM_BASE + 4);
    g_assert_cmphex(ram[0], ==, 0xa0);
    g_assert_cmphex(ram[15], ==, 0xaf);
    g_assert_cmphex(ram[0x1000], ==, 0xb0);
    g_assert_cmphex(ram[0x100f], ==, 0xbf);
    g_assert_cmphex(ram[0x1010], ==, 0);      /* bss zeroed */
    g_assert_cmphex(ram[0x10ff], ==, 0);
    g_assert_cmphex(ram[0x1100], ==, 0xff);   /* untouched beyond */
    g_unlink(path);
}

static void test_raw(void)
{
    uint8_t img[100];
    for (int i = 0; i < 100; i++) img[i] = i;
    g_autofree char *path = write_file("raw.bin", img, sizeof(img));
    uint64_t entry = 0;
    g_assert_true(qs_load_kernel(path, ram, RAM_BASE, RAM_SIZE, &entry, NULL));
    g_assert_cmphex(entry, ==, RAM_BASE);
    g_assert_cmpmem(ram, 100, img, 100);
    GError *err = NULL;
    g_assert_false(qs_load_kernel(path, ram, RAM_BASE, 50, &entry, &err));
    g_assert_nonnull(strstr(err->message, "does not fit in RAM"));
    g_clear_error(&err);
    g_unlink(path);
    g_assert_false(qs_load_kernel(path, ram, RAM_BASE, RAM_SIZE, &entry, &err));
    g_assert_nonnull(strstr(err->message, "cannot open"));
    g_clear_error(&err);
}

typedef struct Bad {
    const char *what;
    void (*mutate)(Elf *e);
    const char *expect;
} Bad;

static void m_class(Elf *e) { e->b[4] = 1; }
static void m_data(Elf *e) { e->b[5] = 2; }
static void m_version(Elf *e) { e->b[6] = 0; }
static void m_type(Elf *e) { put16(e->b + 16, 3); }
static void m_machine(Elf *e) { put16(e->b + 18, 62); }
static void m_eversion(Elf *e) { put32(e->b + 20, 7); }
static void m_ehsize(Elf *e) { put16(e->b + 52, 52); }
static void m_phentsize(Elf *e) { put16(e->b + 54, 32); }
static void m_phnum0(Elf *e) { put16(e->b + 56, 0); }
static void m_phnum_big(Elf *e) { put16(e->b + 56, 60000); }
static void m_phoff(Elf *e) { put64(e->b + 32, UINT64_MAX - 10); }
static void m_phoff_past(Elf *e) { put64(e->b + 32, 150); }
static void m_entry(Elf *e) { put64(e->b + 24, 0x1000); }
static void m_filesz(Elf *e) { put64(e->b + 64 + 32, 0x20); }   /* > memsz 0x10 */
static void m_offset(Elf *e) { put64(e->b + 64 + 8, 0xffffffffffffff00ull); }
static void m_offset_past(Elf *e) { put64(e->b + 64 + 8, 200); }
static void m_paddr_low(Elf *e) { put64(e->b + 64 + 24, 0x1000); }
static void m_paddr_high(Elf *e) { put64(e->b + 64 + 56 + 40, RAM_SIZE); }
static void m_paddr_wrap(Elf *e) { put64(e->b + 64 + 24, UINT64_MAX - 4); }
static void m_noload(Elf *e) { put32(e->b + 64, 4); put32(e->b + 64 + 56, 6); }
static void m_trunc(Elf *e) { e->len = 40; }

static const Bad bads[] = {
    { "class", m_class, "EI_CLASS is 1, expected 2" },
    { "data", m_data, "EI_DATA is 2" },
    { "version", m_version, "EI_VERSION is 0" },
    { "type", m_type, "e_type is 3, expected 2" },
    { "machine", m_machine, "e_machine is 62, expected 243 (EM_RISCV)" },
    { "e_version", m_eversion, "e_version is 7" },
    { "ehsize", m_ehsize, "e_ehsize is 52" },
    { "phentsize", m_phentsize, "e_phentsize is 32, expected 56" },
    { "phnum0", m_phnum0, "e_phnum is 0" },
    { "phnum-big", m_phnum_big, "e_phnum is 60000" },
    { "phoff", m_phoff, "beyond the end of the file" },
    { "phoff-past", m_phoff_past, "beyond the end of the file" },
    { "entry", m_entry, "e_entry 0x1000 is outside RAM" },
    { "filesz", m_filesz, "p_filesz 0x20 is larger than p_memsz 0x10" },
    { "offset", m_offset, "program header 0: p_offset" },
    { "offset-past", m_offset_past, "program header 0: p_offset 0xc8" },
    { "paddr-low", m_paddr_low, "program header 0: segment 0x1000" },
    { "paddr-high", m_paddr_high, "program header 1: segment" },
    { "paddr-wrap", m_paddr_wrap, "does not fit in RAM" },
    { "noload", m_noload, "no PT_LOAD segment" },
    { "truncated", m_trunc, "ELF header truncated: file is 40 bytes" },
};

static void test_bad_elf(gconstpointer data)
{
    const Bad *b = data;
    Elf e = good_elf();
    b->mutate(&e);
    g_autofree char *name = g_strdup_printf("bad-%s.elf", b->what);
    g_autofree char *path = write_file(name, e.b, e.len);
    memset(ram, 0x77, sizeof(ram));
    uint64_t entry = 0;
    GError *err = NULL;
    g_assert_false(qs_load_kernel(path, ram, RAM_BASE, RAM_SIZE, &entry, &err));
    g_assert_nonnull(err);
    if (!strstr(err->message, b->expect) || !strstr(err->message, path)) {
        g_error("%s: message '%s' lacks '%s' or the file name", b->what, err->message, b->expect);
    }
    g_assert_cmphex(ram[0], ==, 0x77);   /* nothing loaded from a refused file */
    g_error_free(err);
    g_unlink(path);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    dir = g_dir_make_tmp("qs-loader-XXXXXX", NULL);
    g_test_add_func("/loader/good-elf", test_good_elf);
    g_test_add_func("/loader/raw", test_raw);
    for (unsigned i = 0; i < G_N_ELEMENTS(bads); i++) {
        g_autofree char *p = g_strdup_printf("/loader/bad/%s", bads[i].what);
        g_test_add_data_func(p, &bads[i], test_bad_elf);
    }
    int r = g_test_run();
    g_rmdir(dir);
    g_free(dir);
    return r;
}
