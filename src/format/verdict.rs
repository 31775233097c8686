//! A caller's verdict on bytes read back, carried through the layers that write them.
//!
//! The layer that writes (FAT, the host's files) reads what it wrote back and asks its caller,
//! which alone knows what the bytes must decode to, whether they are right; the answer is the
//! caller's own typed error, kept as it is up to whoever reports it (downcast with
//! [`VerifyError::inner`]). It lives here, at the bottom of the write stack, so that the FAT
//! layer can carry it without knowing the caller.

use std::error::Error;
use std::sync::Arc;

/// Why the bytes of a file, read back, are not the configuration meant to be written: the
/// caller's own typed error, carried as it is.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct VerifyError(Arc<dyn Error + Send + Sync>);

impl VerifyError {
    /// Wraps the caller's error (any error type: boot.cfg's parse error, a tar listing's).
    pub fn new(e: impl Error + Send + Sync + 'static) -> VerifyError {
        VerifyError(Arc::new(e))
    }

    /// The caller's error, to downcast.
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}


/// Whether the bytes of a file, read back, are what was meant to be written.
pub type Verify<'a> = &'a dyn Fn(&[u8]) -> Result<(), VerifyError>;
