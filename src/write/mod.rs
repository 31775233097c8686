//! The only code that writes: the one commit every command's plan goes through
//! ([`commit::commit`]), the backup it takes first ([`backup`]), the safe replace of one file of
//! a bank and the recovery of an interrupted one ([`transaction`]), and the private files
//! written outside the target ([`private`]).

pub mod backup;
pub mod commit;
pub mod private;
pub mod transaction;
