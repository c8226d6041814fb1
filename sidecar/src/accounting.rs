//! Usage and cost of one answer, and where finished requests are counted.

pub mod ledger;
pub mod recorder;
