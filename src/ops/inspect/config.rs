//! A decoded configuration into the report: esx.conf, the ConfigStore, and the devices with
//! which store the build obeys.

use super::{ConfigReport, ConfigStoreReport, DeviceReport};
use super::{InspectError, Report, SchemaReport, read_config};
use crate::esxi::config::Config;
use crate::esxi::configstore::ConfigStore;
use crate::esxi::devices;
use crate::esxi::devices::HostDevice;
use crate::esxi::devices::Obeyed;
use crate::ops::findings;
use std::path::Path;

pub(super) fn apply_config(
    cfg: &Config,
    source: String,
    build: Option<(String, &'static str)>,
    report: &mut Report,
) {
    report.config = Some(ConfigReport {
        source: source.clone(),
        encryption: cfg.encryption,
        encryption_mode: cfg.encryption_mode.clone(),
        key_id: cfg.sealed.as_ref().map(|s| s.key.key_id.clone()),
        state_members: crate::esxi::config::summarize(&cfg.state),
        local_members: cfg.local_members(),
        esx_conf_lines: cfg.esx_conf.as_ref().map(|c| c.entries.len()),
        hostname: cfg
            .esx_conf
            .as_ref()
            .and_then(|c| c.get("/adv/Misc/HostName"))
            .map(str::to_string),
        device_ownership: None,
    });
    let key_id = cfg.sealed.as_ref().map(|s| s.key.key_id.clone());
    if let Some(f) = findings::encryption_finding(
        cfg.encryption,
        cfg.encryption_mode.as_deref(),
        key_id.as_deref(),
    ) {
        report.findings.push(f);
    }
    let Some(local) = &cfg.local else {
        return;
    };
    let store = match ConfigStore::from_local(local) {
        Ok(s) => s,
        Err(e) => {
            report.warnings.push(format!(
                "{source} > local.tgz: ConfigStore not readable: {e}"
            ));
            None
        }
    };
    let devices = devices_of(cfg.esx_conf.as_ref(), store.as_ref(), build);
    let (obeyed, devices) = devices;
    report
        .findings
        .extend(findings::device_findings(&devices, &obeyed, &report.target));
    if let Some(store) = &store {
        report.findings.extend(findings::schema_findings(store));
        report.configstore = Some(ConfigStoreReport {
            rows: store.rows,
            schema: SchemaReport::new(store),
            pci_devices: store.pci_devices.clone(),
            device_names: store.device_names.clone(),
        });
    }
    if let Some(c) = report.config.as_mut() {
        c.device_ownership = Some(obeyed);
    }
    report.devices = devices
        .into_iter()
        .map(|d| DeviceReport {
            conf: d,
            sysfs: None,
        })
        .collect();
}

/// The devices of a configuration and which store the build obeys: decided by the build that
/// boots it (`build`, with where it was read) or else the build that wrote its schema store.
pub(crate) fn devices_of(
    conf: Option<&crate::esxi::esxconf::EsxConf>,
    store: Option<&ConfigStore>,
    build: Option<(String, &'static str)>,
) -> (Obeyed, Vec<HostDevice>) {
    let (build, from) = match build {
        Some((b, f)) => (Some(b), f),
        None => (None, "boot.cfg"),
    };
    let obeyed = Obeyed::decide(&[
        (build, from),
        (
            store.and_then(|s| s.schemas.esx_base_build()),
            "schema store",
        ),
    ]);
    let mut obeyed = obeyed;
    if obeyed.store == Some(devices::Store::ConfigStore) && store.is_none() {
        obeyed.why.push_str(
            "; this configuration has no readable ConfigStore, so esx.conf's /device/ lines are taken instead",
        );
    }
    let list = devices::host_devices(conf, store, &obeyed);
    (obeyed, list)
}

/// The esx.conf that the bank booting next (or the archive) holds, with where it came from; for
/// `config get`.
pub fn read_esx_conf(
    target: &Path,
) -> Result<(crate::esxi::esxconf::EsxConf, String), InspectError> {
    let report_and_cfg = read_config(target)?;
    match report_and_cfg {
        Some((cfg, source)) => match cfg.esx_conf {
            Some(c) => Ok((c, source)),
            None => Err(InspectError::NotEsxi(format!(
                "{source}: the configuration is sealed by the host's TPM; no offline tool can read it"
            ))),
        },
        None => Err(InspectError::NotEsxi(format!(
            "{}: no configuration found",
            target.display()
        ))),
    }
}
