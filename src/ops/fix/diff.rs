//! The unified diff of esx.conf a plan shows.

use crate::esxi::config::ESX_CONF;

/// A unified diff of two esx.conf texts.
pub fn unified_diff(old: &[u8], new: &[u8], location: &str) -> String {
    let (a, b) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    similar::TextDiff::from_lines(a.as_ref(), b.as_ref())
        .unified_diff()
        .context_radius(2)
        .header(
            &format!("a/{location} > {ESX_CONF}"),
            &format!("b/{location} > {ESX_CONF}"),
        )
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "/adv/Misc/HostName = \"esx01\"\n\
        /device/000:022:00.0/owner = \"passthru\"\n\
        /device/000:022:00.0/vmkname = \"vmhba2\"\n\
        /net/pnic/child[0000]/name = \"vmnic0\"\n\
        /net/pnic/child[0000]/mac = \"00:50:56:aa:bb:01\"\n\
        /net/pnic/child[0001]/name = \"vmnic1\"\n\
        /net/pnic/child[0001]/mac = \"00:50:56:aa:bb:02\"\n\
        /resourceGroups/version = \"7.0.0\"\n\
        /system/uuid = \"5f3c1e2a-0000-1111-2222-333344445555\"\n\
        /vmkernel/hostname = \"esx01\"\n";

    #[test]
    fn one_changed_line_with_two_lines_of_context() {
        let new = OLD.replace(
            "/device/000:022:00.0/owner = \"passthru\"",
            "/device/000:022:00.0/owner = \"vmkernel\"",
        );
        assert_eq!(
            unified_diff(OLD.as_bytes(), new.as_bytes(), "partition 5 /state.tgz"),
            "--- a/partition 5 /state.tgz > etc/vmware/esx.conf\n\
             +++ b/partition 5 /state.tgz > etc/vmware/esx.conf\n\
             @@ -1,4 +1,4 @@\n \
             /adv/Misc/HostName = \"esx01\"\n\
             -/device/000:022:00.0/owner = \"passthru\"\n\
             +/device/000:022:00.0/owner = \"vmkernel\"\n \
             /device/000:022:00.0/vmkname = \"vmhba2\"\n \
             /net/pnic/child[0000]/name = \"vmnic0\"\n"
        );
    }

    #[test]
    fn changes_far_apart_are_two_hunks() {
        // Line 2 changed and a line added at the end (`config set --create`): six unchanged
        // lines between them, more than twice the context.
        let new = OLD.replace("\"passthru\"", "\"vmkernel\"") + "/adv/UserVars/X = \"1\"\n";
        assert_eq!(
            unified_diff(OLD.as_bytes(), new.as_bytes(), "state.tgz"),
            "--- a/state.tgz > etc/vmware/esx.conf\n\
             +++ b/state.tgz > etc/vmware/esx.conf\n\
             @@ -1,4 +1,4 @@\n \
             /adv/Misc/HostName = \"esx01\"\n\
             -/device/000:022:00.0/owner = \"passthru\"\n\
             +/device/000:022:00.0/owner = \"vmkernel\"\n \
             /device/000:022:00.0/vmkname = \"vmhba2\"\n \
             /net/pnic/child[0000]/name = \"vmnic0\"\n\
             @@ -9,2 +9,3 @@\n \
             /system/uuid = \"5f3c1e2a-0000-1111-2222-333344445555\"\n \
             /vmkernel/hostname = \"esx01\"\n\
             +/adv/UserVars/X = \"1\"\n"
        );
    }

    #[test]
    fn nothing_changed_is_no_diff_at_all() {
        assert_eq!(unified_diff(OLD.as_bytes(), OLD.as_bytes(), "state.tgz"), "");
    }

    #[test]
    fn a_restore_onto_an_empty_bank_adds_every_line() {
        // A bank without a configuration: the old side is empty.
        let new = "/adv/Misc/HostName = \"esx01\"\n/system/uuid = \"u\"\n";
        assert_eq!(
            unified_diff(b"", new.as_bytes(), "partition 6 /state.tgz"),
            "--- a/partition 6 /state.tgz > etc/vmware/esx.conf\n\
             +++ b/partition 6 /state.tgz > etc/vmware/esx.conf\n\
             @@ -0,0 +1,2 @@\n\
             +/adv/Misc/HostName = \"esx01\"\n\
             +/system/uuid = \"u\"\n"
        );
    }
}
