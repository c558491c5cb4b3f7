//! A child process that a test started, killed (by its own PID) and reaped when the test lets go
//! of it, also when the test panics: a failed run leaves no collector behind.
#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// Owns a [`Child`]; dropping it sends SIGKILL unless the child was already waited for.
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        // `try_wait` first: a child already reaped must not be signalled (its PID may be reused).
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
