//! Tuning glibc's allocator for berth's buffers, before any thread starts.
//!
//! A snapshot passes every byte of a volume through buffers of 0.5–8 MiB
//! (chunks, their compressed and encrypted copies, packs) on a thread per
//! core and stage. With glibc's defaults, the threshold above which memory
//! comes from `mmap` (and goes back to the system when freed) rises to
//! 32 MiB after the first such free, so every buffer comes from one of up
//! to eight arenas per core, which keep what is freed: a 2 GiB first
//! snapshot peaked at 116–190 MiB of resident memory for 77 MiB of live
//! heap. Buffers of 4 MiB and more from `mmap`, and two arenas, brought it
//! to about 100 MiB at the same speed; a lower threshold saved more memory
//! but paid for it in page faults (1 MiB: 80 MiB, and 1.5× the time).

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
