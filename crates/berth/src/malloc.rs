//! Tuning glibc's allocator for berth's buffers, before any thread starts.
//!
//! A snapshot passes every byte of a volume through buffers of 0.5–8 MiB
//! (chunks, their compressed and encrypted copies, packs) on a thread per
//! core and stage. With glibc's defaults, the threshold above which memory
//! comes from `mmap` (and goes back to the system when freed) rises to
//! 32 MiB after the first such free, and every thread may get an arena of
//! its own (up to eight per core), which keeps what is freed: a 2 GiB first
//! snapshot peaked at 116–190 MiB of resident memory (changing from run to
//! run with thread timing) for 77 MiB of live heap. A fixed threshold and
//! two arenas made it 92–103 MiB, steady; with the smaller chunks of
//! repo.rs it is about 80 MiB, and the threshold (4, 8 or 32 MiB) no longer
//! shows in time or memory. A threshold of 1 MiB saved a little more
//! memory but paid for it in page faults (1.5× the time).

/// Applies the settings; a no-op where the C library is not glibc.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 4 << 20;
        const ARENA_MAX: libc::c_int = 2;
        // SAFETY: mallopt only changes allocator parameters; it is called
        // from main before any other thread exists. A refused setting
        // (return 0) leaves glibc's default, which is still correct.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    }
}
