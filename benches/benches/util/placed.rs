//! Input placement shared by the benches that compare against a copy.

/// Places a copy of `msg` so that its page offset is 2 KiB away from the
/// output buffer's. Without this, the allocator can put source and
/// destination a few octets apart modulo 4 KiB, and `memcpy` then suffers
/// from 4K aliasing (measured: the copy baseline dropped from ~30 to ~2 GiB/s
/// on this machine), which would make the comparison meaningless.
pub fn placed_copy(msg: &[u8], out: &[u8]) -> (Vec<u8>, usize) {
    let storage = vec![0u8; msg.len() + 8192];
    let want = (out.as_ptr() as usize + 2048) % 4096;
    let have = storage.as_ptr() as usize % 4096;
    let off = (want + 4096 - have) % 4096;
    let mut storage = storage;
    storage[off..off + msg.len()].copy_from_slice(msg);
    (storage, off)
}
