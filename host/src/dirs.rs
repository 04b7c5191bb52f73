//! Directories the host creates for what it trusts: compiled code and the
//! databases holding secrets' ciphertext.

/// Create `dir` (and parents) readable only by this user: it holds
/// compiled code the host trusts, or secrets' ciphertext.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}
