//! `berth logs TASK`: the output of one task of `berth up`.
//!
//! The local supervisor appends each task's stdout and stderr to
//! `<state>/logs/<id>.log`, where the id is the task's 32 hex digits; this
//! command reads that file directly, so it works after `berth up` has
//! stopped too. `--follow` keeps printing what is appended, like `tail -f`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How often `--follow` looks for appended output.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// State folder of `berth up`.
    #[arg(long, env = "BERTH_STATE", value_name = "DIR", default_value = "./.berth")]
    state: PathBuf,
    /// The task: its 32-hex id (as `berth ps` shows it), a unique prefix of
    /// it, or its full ARN.
    task: String,
    /// Keep printing output as it is appended, until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
}

pub fn run(args: Args) -> Result<()> {
    let dir = args.state.join("logs");
    let path = find(&dir, &args.task)?;
    let mut file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = io::stdout().lock();
    let mut pos = match copy(&mut file, &mut out)? {
        Some(n) => n,
        None => return Ok(()), // stdout was closed
    };
    if !args.follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(POLL);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // removed by retention; may come back
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if len < pos {
            // Truncated: start over from its new beginning.
            file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            pos = 0;
        }
        if len > pos {
            file.seek(SeekFrom::Start(pos))?;
            match copy(&mut file, &mut out)? {
                Some(n) => pos += n,
                None => return Ok(()),
            }
        }
    }
}

/// Copies the rest of `file` to `out`; `None` if `out` was closed (a pipe
/// into `head`), which ends the command quietly.
fn copy(file: &mut File, out: &mut impl Write) -> Result<Option<u64>> {
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).context("cannot read the log")?;
    match out.write_all(&buf).and_then(|()| out.flush()) {
        Ok(()) => Ok(Some(buf.len() as u64)),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(None),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// The log file of the task given as an id, a unique id prefix or an ARN.
fn find(dir: &Path, given: &str) -> Result<PathBuf> {
    let Some(id) = task_id(given) else {
        bail!("'{given}' is not a task: give its 32 hex digits as `berth ps` shows them, a prefix of them, or its ARN");
    };
    if id.len() == 32 {
        let path = dir.join(format!("{id}.log"));
        if path.is_file() {
            return Ok(path);
        }
        bail!("no log of task {id} in {}", dir.display());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("no log of task {id}…: {} does not exist", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else { continue };
        if stem.starts_with(&id) && task_id(stem).is_some_and(|s| s.len() == 32) {
            found.push(dir.join(&name));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no log of a task whose id starts with {id} in {}", dir.display()),
        n => bail!("{id} is the start of {n} task ids; give more of it"),
    }
}

/// The task id (or id prefix) in `given`: the part after an ARN's last `/`,
/// lowercased, if it is 1 to 32 hex digits.
fn task_id(given: &str) -> Option<String> {
    let id = given.trim().rsplit('/').next()?.to_ascii_lowercase();
    let hex = (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn ids_from_arns_and_prefixes() {
        assert_eq!(task_id(ID).as_deref(), Some(ID));
        assert_eq!(task_id(&format!("arn:aws:ecs:local:000000000000:task/berth/{ID}")).as_deref(), Some(ID));
        assert_eq!(task_id("0123ABC").as_deref(), Some("0123abc"));
        assert_eq!(task_id("nope"), None);
        assert_eq!(task_id(""), None);
        assert_eq!(task_id(&format!("{ID}0")), None);
    }

    #[test]
    fn finds_logs_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let other = "0123ffffffffffffffffffffffffffff";
        for id in [ID, other] {
            std::fs::write(dir.path().join(format!("{id}.log")), id).unwrap();
        }
        assert_eq!(find(dir.path(), ID).unwrap(), dir.path().join(format!("{ID}.log")));
        assert_eq!(find(dir.path(), "01234").unwrap(), dir.path().join(format!("{ID}.log")));
        assert!(find(dir.path(), "0123").unwrap_err().to_string().contains("start of 2"));
        assert!(find(dir.path(), "ab").unwrap_err().to_string().contains("no log"));
        assert!(find(dir.path(), "nope").unwrap_err().to_string().contains("not a task"));
    }
}
