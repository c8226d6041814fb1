//! Which routes and budgets need their status written at the next flush.

use std::{
    collections::BTreeSet,
    sync::{Mutex, MutexGuard, PoisonError},
};

use sluice_crds::ObjectKey;

#[derive(Debug, Default)]
struct Inner {
    routes: BTreeSet<ObjectKey>,
    budgets: BTreeSet<ObjectKey>,
}

/// Routes and budgets whose status should be written.
#[derive(Debug, Default)]
pub struct StatusMarks {
    inner: Mutex<Inner>,
}

impl StatusMarks {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks routes.
    pub fn routes(&self, keys: impl IntoIterator<Item = ObjectKey>) {
        self.lock().routes.extend(keys);
    }

    /// Marks budgets.
    pub fn budgets(&self, keys: impl IntoIterator<Item = ObjectKey>) {
        self.lock().budgets.extend(keys);
    }

    /// Takes every mark: (routes, budgets).
    pub fn take(&self) -> (BTreeSet<ObjectKey>, BTreeSet<ObjectKey>) {
        let mut inner = self.lock();
        (std::mem::take(&mut inner.routes), std::mem::take(&mut inner.budgets))
    }
}
