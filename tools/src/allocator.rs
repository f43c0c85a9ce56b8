//! The process's memory allocator.
//!
//! The writer's per-record allocations spent a large share of its time in
//! glibc's malloc; mimalloc removes most of that. Its settings are the
//! operator's, read from the environment when the process starts (the
//! README names the ones that matter here, such as `MIMALLOC_PURGE_DELAY`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
