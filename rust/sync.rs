//! Locking that cannot panic. No lock in this crate is held across a call
//! into Python, so poisoning can only follow a bug; recover the data.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
