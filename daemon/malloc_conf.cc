// aspfsd's allocator is jemalloc (glibc's malloc was a fifth of a metadata
// txn's CPU; docs/performance.md). Its default per-thread caches hold about
// 30 KiB each, and every mount has its own threads: fewer slots keep an idle
// mount near 110 KiB instead of 160 KiB at the same speed. MALLOC_CONF in
// the environment still overrides.
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "tcache_nslots_small_max:20,tcache_nslots_large:4";
}
