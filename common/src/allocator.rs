//! The memory allocator of every job: mimalloc, in place of the C library's `malloc` for the
//! whole process, librdkafka's allocations included.
//!
//! librdkafka allocates every fetched message on its fetch thread, and the job frees it on its
//! own. glibc's `free` of a block that another thread's arena gave out takes that arena's lock,
//! which the fetch thread holds while it allocates: the two threads wait on each other for
//! every message (in the replay's thread, a fifth of the time was spent waking the fetch thread
//! and another fifth in `calloc` and `free`). mimalloc hands such a block back to its page's
//! own list without a lock: the replay on the mock cluster went from 2.4 to about 5 million
//! readings/s (docs/performance.md).
//!
//! Memory freed is kept for a while before it is given back to the system, so that the next
//! allocation finds it ready: mimalloc keeps it for a second by default, which let the
//! replay's peak on Tansu grow from about 57 MiB to 64-77 MiB (fetch responses of up to 2 MiB,
//! each decompressed into buffers of their own); 100 ms keeps it at 56-60 MiB, at about 5%
//! of the rate (purged memory is faulted in again).

use libmimalloc_sys::{mi_option_set, mi_option_t};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc.h, whose option numbers are stable.
const PURGE_DELAY: mi_option_t = 15;
const PURGE_DELAY_MS: std::ffi::c_long = 100;
/// `mi_option_page_reclaim_on_free`.
const PAGE_RECLAIM_ON_FREE: mi_option_t = 35;
/// Across threads.
const RECLAIM_ACROSS_THREADS: std::ffi::c_long = 1;

/// Sets how long freed memory is kept, and who takes a page the fetch thread filled: called
/// first thing by every binary, before any other thread starts.
///
/// A page the fetch thread has filled with messages is abandoned by it (mimalloc 3 abandons
/// full pages), and by default every free of one of its blocks on the job's thread then takes
/// the page over, collects it and abandons it again: a ninth of the replay's own instructions
/// per reading. Reclaimed across threads, the page becomes the job's thread's own at its
/// first free, and the frees after it are plain ones (in alternating runs on the mock cluster
/// the replay's median rate 7% higher, its best 17%; its peak memory unchanged:
/// docs/performance.md).
///
/// mimalloc's own environment variables (`MIMALLOC_PURGE_DELAY`,
/// `MIMALLOC_PAGE_RECLAIM_ON_FREE`) still win, to compare settings without a build.
pub fn configure() {
    set_unless_given(PURGE_DELAY, "MIMALLOC_PURGE_DELAY", PURGE_DELAY_MS);
    set_unless_given(PAGE_RECLAIM_ON_FREE, "MIMALLOC_PAGE_RECLAIM_ON_FREE", RECLAIM_ACROSS_THREADS);
}

fn set_unless_given(option: mi_option_t, variable: &str, value: std::ffi::c_long) {
    if std::env::var_os(variable).is_none() {
        // SAFETY: sets one of mimalloc's options; any value is valid for these.
        unsafe { mi_option_set(option, value) };
    }
}
