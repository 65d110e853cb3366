//! How much work an instance takes on at once.

/// The CPUs this process may use (1 when unknown).
pub fn vcpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
