//! Folder transport. Inbound: a file is claimed by renaming it into `.work/` (atomic, so two
//! pollers never both take it) once it has stopped changing, and when handled it moves to
//! `processed/` or `rejected/` with a report beside it. Outbound: written to a hidden temporary
//! name, synced, then renamed, so a partner never sees half a file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A file taken from an inbound folder.
#[derive(Debug)]
pub struct Claimed {
    /// Its name as dropped.
    pub name: String,
    /// The name it is filed under in `processed/` or `rejected/`: the dropped name, with a
    /// numbered suffix when that name was filed before. Exceptions name it, so a replay finds it.
    pub stored: String,
    /// Where it is while being handled.
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub modified: SystemTime,
}

const WORK: &str = ".work";
pub const PROCESSED: &str = "processed";
pub const REJECTED: &str = "rejected";

/// Creates the folders a partner's inbound side uses, and puts back files a crash left in
/// `.work/` (handling them again is safe: their events are repeats). A file dropped since under
/// the same name is kept: the one put back gets a numbered name.
pub fn prepare(inbound: &Path) -> io::Result<()> {
    for sub in [WORK, PROCESSED, REJECTED] {
        fs::create_dir_all(inbound.join(sub))?;
    }
    for entry in fs::read_dir(inbound.join(WORK))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = free_name(&name, |n| inbound.join(n).exists());
        fs::rename(entry.path(), inbound.join(target))?;
    }
    Ok(())
}

/// Puts a claimed file back in the inbound folder to be handled again later (the hub could not
/// apply it now), under a free name.
pub fn release(inbound: &Path, claimed: &Claimed) -> io::Result<()> {
    let target = free_name(&claimed.name, |n| inbound.join(n).exists());
    fs::rename(&claimed.path, inbound.join(target))
}

/// `name`, or `name` with `.1`, `.2`, ... before its extension (`a.1.edi`), the first that
/// `taken` says is free.
fn free_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    let mut candidate = name.to_string();
    let mut n = 1;
    while taken(&candidate) {
        candidate = format!("{stem}.{n}{ext}");
        n += 1;
    }
    candidate
}

/// Claims every regular file in `inbound` unchanged for `settle`, oldest first. Hidden files
/// and names ending in `.tmp` or `.part` are being written and are left alone.
pub fn claim_ready(inbound: &Path, settle: Duration) -> io::Result<Vec<Claimed>> {
    let now = SystemTime::now();
    let mut ready = Vec::new();
    for entry in fs::read_dir(inbound)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part") {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified()?;
        if now.duration_since(modified).unwrap_or_default() < settle {
            continue;
        }
        ready.push((modified, name));
    }
    ready.sort();
    let mut claimed = Vec::with_capacity(ready.len());
    for (modified, name) in ready {
        // A file that cannot be taken now stays where it is and is tried at the next poll;
        // the ones already taken are still handed over.
        match claim(inbound, &name, modified) {
            Ok(Some(c)) => claimed.push(c),
            Ok(None) => {}
            Err(e) => tracing::warn!(file = %name, error = %e, "cannot claim an inbound file"),
        }
    }
    Ok(claimed)
}

fn claim(inbound: &Path, name: &str, modified: SystemTime) -> io::Result<Option<Claimed>> {
    let path = inbound.join(WORK).join(name);
    match fs::rename(inbound.join(name), &path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None), // another poller
        Err(e) => return Err(e),
    }
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            fs::rename(&path, inbound.join(name))?;
            return Err(e);
        }
    };
    let stored = free_name(name, |n| {
        inbound.join(PROCESSED).join(n).exists() || inbound.join(REJECTED).join(n).exists()
    });
    Ok(Some(Claimed {
        stored,
        name: name.to_string(),
        path,
        bytes,
        modified,
    }))
}

/// Moves a handled file to `processed/` or `rejected/` under its stored name and writes
/// `report` beside it as `<stored>.report.json`. Returns the new path.
pub fn finish(
    inbound: &Path,
    claimed: &Claimed,
    accepted: bool,
    report: &str,
) -> io::Result<PathBuf> {
    let dir = inbound.join(if accepted { PROCESSED } else { REJECTED });
    let target = dir.join(&claimed.stored);
    write_atomic(
        &dir,
        &format!("{}.report.json", claimed.stored),
        report.as_bytes(),
    )?;
    if claimed.path != target {
        fs::rename(&claimed.path, &target)?;
    }
    Ok(target)
}

/// Writes `bytes` to `dir/name` atomically: a hidden temporary file, synced, renamed, and the
/// folder synced.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &target)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(target)
}

/// How long a file must sit unchanged before it is claimed.
pub fn settle(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_settled_files_and_files_them_with_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let inbound = dir.path();
        prepare(inbound).unwrap();
        fs::write(inbound.join("a.edi"), b"ISA").unwrap();
        fs::write(inbound.join("b.edi.part"), b"half").unwrap();
        fs::write(inbound.join(".hidden"), b"x").unwrap();
        let claimed = claim_ready(inbound, Duration::ZERO).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].name, "a.edi");
        assert_eq!(claimed[0].bytes, b"ISA");
        assert!(
            !inbound.join("a.edi").exists(),
            "taken out of the inbound folder"
        );
        let moved = finish(inbound, &claimed[0], true, "{}").unwrap();
        assert_eq!(moved, inbound.join(PROCESSED).join("a.edi"));
        assert!(inbound.join(PROCESSED).join("a.edi.report.json").exists());

        // The same name again is kept beside the first.
        fs::write(inbound.join("a.edi"), b"ISA2").unwrap();
        let again = claim_ready(inbound, Duration::ZERO).unwrap();
        assert_eq!(again[0].stored, "a.1.edi", "the extension stays last");
        let moved = finish(inbound, &again[0], false, "{\"error\":1}").unwrap();
        assert_eq!(moved, inbound.join(REJECTED).join("a.1.edi"));
        fs::write(inbound.join("a.edi"), b"ISA3").unwrap();
        let third = claim_ready(inbound, Duration::ZERO).unwrap();
        let moved = finish(inbound, &third[0], true, "{}").unwrap();
        assert_eq!(moved, inbound.join(PROCESSED).join("a.2.edi"));
    }

    #[test]
    fn a_file_still_changing_waits_and_a_crash_leftover_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let inbound = dir.path();
        prepare(inbound).unwrap();
        fs::write(inbound.join("new.edi"), b"ISA").unwrap();
        assert!(
            claim_ready(inbound, Duration::from_secs(3600))
                .unwrap()
                .is_empty()
        );
        let claimed = claim_ready(inbound, Duration::ZERO).unwrap();
        assert_eq!(claimed.len(), 1);
        // A crash before finish, and the partner drops a new file of the same name: the next
        // start puts the old one back beside it, overwriting nothing.
        fs::write(inbound.join("new.edi"), b"ISA-NEWER").unwrap();
        prepare(inbound).unwrap();
        assert_eq!(fs::read(inbound.join("new.edi")).unwrap(), b"ISA-NEWER");
        assert_eq!(fs::read(inbound.join("new.1.edi")).unwrap(), b"ISA");
        // A file the hub cannot apply now goes back the same way.
        let again = claim_ready(inbound, Duration::ZERO).unwrap();
        assert_eq!(again.len(), 2);
        for c in &again {
            release(inbound, c).unwrap();
        }
        assert!(inbound.join("new.edi").exists() && inbound.join("new.1.edi").exists());
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_atomic(dir.path(), "out.x12", b"ISA*").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"ISA*");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }
}
