//! bootbank's integration tests, one binary with a module per topic (one link, one copy of
//! the fixture builder in `common`, instead of one binary per file). Run one topic with
//! `cargo test --test it -- fix_configstore::`, one test with `--exact topic::name`.

mod common;
mod crash_support;

mod archive_rewrite;
mod audit;
mod bad_input;
mod bank;
mod bank_kill;
mod cli_packaging;
mod configstore;
mod envelope;
mod extract;
mod fat_damage;
mod fix_configstore;
mod fix_encrypted;
mod fix_faults;
mod fix_kill;
mod fix_write;
mod fixtures_build;
mod inspect_disks;
mod layers;
mod lint;
mod lockdown;
mod network;
mod nextboot_rules;
mod passwd;
mod power_cut;
mod private_files;
mod rescue_vm;
mod restore_config;
mod splice;
mod sysfs;
mod vmdk;
mod write_path_property;
