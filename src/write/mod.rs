//! The code that writes to a bank: the safe replace of one file and the recovery of an
//! interrupted one.

pub mod commit;
pub mod private;
pub mod transaction;
