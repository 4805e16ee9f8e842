//! File operations for directories an attacker may write into.
//!
//! A batch job writes plaintext. Anyone who can write into its output directory (or, in place,
//! the input's directory) could plant a symbolic link where the job is about to create a file
//! (`a.jsonl.fle-partial` → somewhere else) and have the plaintext written through it, with the
//! link target's permissions; or plant a symbolic link to a directory and have outputs land
//! outside the tree. So every file the job creates or reopens is reached from a directory
//! handle, never through a path that is resolved again:
//!
//! - directories below the output root are opened one component at a time with
//!   `O_DIRECTORY | O_NOFOLLOW` (created owner-only when missing): a symbolic link anywhere
//!   below the root is refused;
//! - files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600: an existing entry is
//!   never written through; the only entries removed first are the job's own temporary names,
//!   and `unlink` removes a link itself, never its target;
//! - a temporary file reopened to resume must be a regular, owner-only file with one link (no
//!   hard link to elsewhere);
//! - renames and directory syncs go through the same handle;
//! - inputs found by a walk, or replaced in place, are read through the walk root's handle
//!   ([`Dir::open_read_below`]), every directory on the way and the file itself opened without
//!   following links; a named input is opened with `O_NONBLOCK` and refused unless it is a
//!   regular file ([`open_regular`]), so a FIFO cannot make the job wait forever.
//!
//! The root itself (`--out DIR`, or the directory of a file named on the command line) is taken
//! as the user gave it, links included: that is their choice, not a planted one.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, Mode, OFlags};

/// Mode of files the job creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of directories the job creates under the output root.
pub const DIR_MODE: u32 = 0o700;

/// An open directory: every operation is relative to it and follows no link in its last
/// component.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// What makes an entry unsafe to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsafe {
    /// A symbolic link where a directory or file was expected.
    Symlink,
    /// Not a regular file (a directory, FIFO, socket or device).
    NotRegular,
    /// A regular file with more than one hard link.
    HardLinked,
    /// A file readable or writable by others (not one this job created).
    NotOwnerOnly,
    /// A file owned by another user (not one this job created).
    NotOwned,
    /// Not the file the job wrote under that name (something was put in its place).
    Replaced,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsafe::Symlink => "is a symbolic link",
            Unsafe::NotRegular => "is not a regular file",
            Unsafe::HardLinked => "has other hard links",
            Unsafe::NotOwnerOnly => "is accessible to other users",
            Unsafe::NotOwned => "is owned by another user",
            Unsafe::Replaced => "is not the file fle wrote under that name",
        })
    }
}

/// An error of a safe operation: the system's, or an entry refused.
#[derive(Debug)]
pub enum FsError {
    /// The system call failed.
    Io(io::Error),
    /// The entry exists but is unsafe to use.
    Unsafe(Unsafe),
}

impl From<io::Error> for FsError {
    fn from(e: io::Error) -> Self {
        FsError::Io(e)
    }
}

impl From<rustix::io::Errno> for FsError {
    fn from(e: rustix::io::Errno) -> Self {
        FsError::Io(e.into())
    }
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsError::Io(e) => e.fmt(f),
            FsError::Unsafe(u) => u.fmt(f),
        }
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FsError::Io(e) => Some(e),
            FsError::Unsafe(_) => None,
        }
    }
}

/// `ELOOP` (a link met with `O_NOFOLLOW`) and `ENOTDIR` (a link met with `O_DIRECTORY |
/// O_NOFOLLOW` on some kernels) as [`Unsafe::Symlink`] when the entry is a link.
fn link_or(dir: &Dir, name: &OsStr, e: rustix::io::Errno) -> FsError {
    if matches!(e, rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)
        && dir.entry_kind(name).ok().flatten() == Some(Kind::Symlink)
    {
        FsError::Unsafe(Unsafe::Symlink)
    } else {
        FsError::Io(e.into())
    }
}

/// What an entry is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else.
    Other,
}

/// Identity and state of a file, to tell whether it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Device and inode.
    pub dev_ino: (u64, u64),
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: u128,
}

impl Identity {
    /// The identity of an open file.
    pub fn of(file: &File) -> io::Result<Identity> {
        let m = file.metadata()?;
        Ok(Identity {
            dev_ino: (m.dev(), m.ino()),
            size: m.len(),
            mtime_ns: mtime_ns(m.mtime(), m.mtime_nsec()),
        })
    }
}

fn mtime_ns(secs: i64, nsec: i64) -> u128 {
    if secs < 0 {
        return 0;
    }
    secs as u128 * 1_000_000_000 + nsec.max(0) as u128
}

impl Dir {
    /// Opens the directory at `path` as the user named it (links in it followed).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd })
    }

    /// Opens (with `create`, creating owner-only when missing) the directory `rel` below this
    /// one, one component at a time, refusing symbolic links. `rel` must be relative and hold
    /// only normal components.
    pub fn open_below(&self, rel: &Path, create: bool) -> Result<Dir, FsError> {
        let mut dir = Dir {
            fd: self.fd.try_clone()?,
        };
        for component in rel.components() {
            let Component::Normal(name) = component else {
                return Err(FsError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a path below the output directory holds '..' or is absolute",
                )));
            };
            dir = dir.child(name, create)?;
        }
        Ok(dir)
    }

    fn child(&self, name: &OsStr, create: bool) -> Result<Dir, FsError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Dir { fd }),
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(DIR_MODE)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                rustix::fs::openat(&self.fd, name, flags, Mode::empty())
                    .map(|fd| Dir { fd })
                    .map_err(|e| link_or(self, name, e))
            }
            Err(e) => Err(link_or(self, name, e)),
        }
    }

    /// What `name` is, without following it; `None` when it does not exist.
    pub fn entry_kind(&self, name: &OsStr) -> io::Result<Option<Kind>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(
                match rustix::fs::FileType::from_raw_mode(st.st_mode as _) {
                    rustix::fs::FileType::RegularFile => Kind::File,
                    rustix::fs::FileType::Directory => Kind::Dir,
                    rustix::fs::FileType::Symlink => Kind::Symlink,
                    _ => Kind::Other,
                },
            )),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The identity of the regular file `name` (not followed); an error when it is not one.
    pub fn identity(&self, name: &OsStr) -> Result<Identity, FsError> {
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        match rustix::fs::FileType::from_raw_mode(st.st_mode as _) {
            rustix::fs::FileType::RegularFile => {}
            rustix::fs::FileType::Symlink => return Err(FsError::Unsafe(Unsafe::Symlink)),
            _ => return Err(FsError::Unsafe(Unsafe::NotRegular)),
        }
        Ok(Identity {
            dev_ino: (st.st_dev as u64, st.st_ino as u64),
            size: st.st_size as u64,
            mtime_ns: mtime_ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
        })
    }

    /// Opens the regular file `name` for reading, refusing a link or anything but a file.
    pub fn open_read(&self, name: &OsStr) -> Result<File, FsError> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| link_or(self, name, e))?;
        regular_blocking(File::from(fd))
    }

    /// The device and inode of this directory.
    pub fn dev_ino(&self) -> io::Result<(u64, u64)> {
        let st = rustix::fs::fstat(&self.fd)?;
        Ok((st.st_dev as u64, st.st_ino as u64))
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }

    /// The entries of this directory (without `.` and `..`), each with what it is (not
    /// followed) or the error met finding out, read through this handle. A read error met
    /// part-way is returned beside the entries read before it.
    pub fn entries(&self) -> (Vec<(OsString, io::Result<Kind>)>, Option<io::Error>) {
        let mut out = Vec::new();
        let stream = match rustix::fs::Dir::read_from(&self.fd) {
            Ok(stream) => stream,
            Err(e) => return (out, Some(e.into())),
        };
        for entry in stream {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => return (out, Some(e.into())),
            };
            let bytes = entry.file_name().to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let name = OsStr::from_bytes(bytes).to_os_string();
            let kind = match entry.file_type() {
                rustix::fs::FileType::RegularFile => Ok(Kind::File),
                rustix::fs::FileType::Directory => Ok(Kind::Dir),
                rustix::fs::FileType::Symlink => Ok(Kind::Symlink),
                rustix::fs::FileType::Unknown => match self.entry_kind(&name) {
                    Ok(Some(kind)) => Ok(kind),
                    Ok(None) => Err(io::Error::from(io::ErrorKind::NotFound)),
                    Err(e) => Err(e),
                },
                _ => Ok(Kind::Other),
            };
            out.push((name, kind));
        }
        (out, None)
    }

    /// Opens the regular file `rel` below this directory for reading: every directory on the
    /// way opened with `O_DIRECTORY | O_NOFOLLOW` ([`Dir::open_below`], nothing created), the
    /// file itself with [`Dir::open_read`].
    pub fn open_read_below(&self, rel: &Path) -> Result<File, FsError> {
        let (below, name) = split(rel)?;
        self.open_below(below, false)?.open_read(name)
    }

    /// Creates `name` for reading and writing, owner-only, failing if anything is there.
    pub fn create_new(&self, name: &OsStr) -> Result<File, FsError> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )
        .map_err(|e| link_or(self, name, e))?;
        Ok(File::from(fd))
    }

    /// Reopens the job's own temporary file `name` to continue it: it must be a regular,
    /// owner-only file with a single link, owned by this process's effective user.
    pub fn reopen_own(&self, name: &OsStr) -> Result<File, FsError> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| link_or(self, name, e))?;
        let file = File::from(fd);
        check_own(&file)?;
        regular_blocking(file)
    }

    /// Opens a file this job wrote earlier (its manifest) for reading, with the checks of
    /// [`Dir::reopen_own`].
    pub fn open_own_read(&self, name: &OsStr) -> Result<File, FsError> {
        let file = self.open_read(name)?;
        check_own(&file)?;
        Ok(file)
    }

    /// Removes `name` if it exists (a link is removed itself, never its target). Directories
    /// are not removed.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames `from` to `to`, both in this directory (replacing `to` atomically).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to)?;
        Ok(())
    }

    /// Makes the directory's entries durable (best effort: some file systems refuse).
    pub fn sync(&self) {
        let _ = rustix::fs::fsync(self.fd.as_fd());
    }
}

/// `file`, opened with `O_NONBLOCK` (so that opening a FIFO does not wait for a writer), if it
/// is a regular file; then in blocking mode again.
fn regular_blocking(file: File) -> Result<File, FsError> {
    if !file.metadata()?.is_file() {
        return Err(FsError::Unsafe(Unsafe::NotRegular));
    }
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    Ok(file)
}

/// Opens the regular file at `path` for reading as the user named it (links in it followed:
/// a named input is the user's choice), refusing anything else (a FIFO, socket or device)
/// without blocking on it.
pub fn open_regular(path: &Path) -> Result<File, FsError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    regular_blocking(File::from(fd))
}

/// A file the job itself created: regular, one link, owner-only, owned by the effective user
/// (root opens anyone's 0600 file: the owner check is what stops a planted one).
fn check_own(file: &File) -> Result<(), FsError> {
    let m = file.metadata()?;
    if !m.is_file() {
        return Err(FsError::Unsafe(Unsafe::NotRegular));
    }
    if m.nlink() != 1 {
        return Err(FsError::Unsafe(Unsafe::HardLinked));
    }
    if m.mode() & 0o077 != 0 {
        return Err(FsError::Unsafe(Unsafe::NotOwnerOnly));
    }
    if m.uid() != effective_uid() {
        return Err(FsError::Unsafe(Unsafe::NotOwned));
    }
    Ok(())
}

/// This process's effective user id.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The last component of `path` as a name to use below its directory, and that directory.
pub fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = path
        .file_name()
        .filter(|n| !n.as_bytes().is_empty())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
        })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    Ok((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn create_new_refuses_a_planted_link_and_leaves_its_target_alone() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        symlink(&target, t.path().join("a.fle-partial")).unwrap();
        let dir = Dir::open(t.path()).unwrap();
        let err = dir.create_new(OsStr::new("a.fle-partial")).unwrap_err();
        assert!(
            matches!(err, FsError::Unsafe(Unsafe::Symlink) | FsError::Io(_)),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        dir.remove(OsStr::new("a.fle-partial")).unwrap();
        assert!(target.exists());
        let mut f = dir.create_new(OsStr::new("a.fle-partial")).unwrap();
        f.write_all(b"x").unwrap();
        let mode = std::fs::metadata(t.path().join("a.fle-partial"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, FILE_MODE);
    }

    #[test]
    fn open_below_refuses_linked_directories_and_creates_owner_only() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        symlink(elsewhere.path(), t.path().join("a/b")).unwrap();
        let root = Dir::open(t.path()).unwrap();
        let err = root.open_below(Path::new("a/b/c"), true).unwrap_err();
        assert!(matches!(err, FsError::Unsafe(Unsafe::Symlink)), "{err}");
        assert!(std::fs::read_dir(elsewhere.path())
            .unwrap()
            .next()
            .is_none());
        root.open_below(Path::new("x/y"), true).unwrap();
        let mode = std::fs::metadata(t.path().join("x/y"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, DIR_MODE);
        assert!(root.open_below(Path::new("../x"), true).is_err());
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        // No writer: a blocking open would never return.
        assert!(matches!(
            open_regular(&fifo),
            Err(FsError::Unsafe(Unsafe::NotRegular))
        ));
        assert!(matches!(
            open_regular(Path::new("/dev/null")),
            Err(FsError::Unsafe(Unsafe::NotRegular))
        ));
        let dir = Dir::open(t.path()).unwrap();
        assert!(matches!(
            dir.open_read(OsStr::new("pipe")),
            Err(FsError::Unsafe(Unsafe::NotRegular))
        ));
        std::fs::write(t.path().join("f"), "x").unwrap();
        let file = open_regular(&t.path().join("f")).unwrap();
        let flags = rustix::fs::fcntl_getfl(&file).unwrap();
        assert!(!flags.contains(OFlags::NONBLOCK));
    }

    #[test]
    fn open_read_below_refuses_a_directory_swapped_for_a_link() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        std::fs::write(t.path().join("sub/a"), "inside").unwrap();
        std::fs::write(elsewhere.path().join("a"), "outside").unwrap();
        let root = Dir::open(t.path()).unwrap();
        let (entries, error) = root.entries();
        assert!(error.is_none());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, "sub");
        assert_eq!(entries[0].1.as_ref().unwrap(), &Kind::Dir);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut root.open_read_below(Path::new("sub/a")).unwrap(),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "inside");
        std::fs::rename(t.path().join("sub"), t.path().join("moved")).unwrap();
        symlink(elsewhere.path(), t.path().join("sub")).unwrap();
        assert!(matches!(
            root.open_read_below(Path::new("sub/a")),
            Err(FsError::Unsafe(Unsafe::Symlink))
        ));
    }

    #[test]
    fn reopen_own_refuses_links_hard_links_and_shared_files() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open(t.path()).unwrap();
        drop(dir.create_new(OsStr::new("p")).unwrap());
        dir.reopen_own(OsStr::new("p")).unwrap();
        std::fs::hard_link(t.path().join("p"), t.path().join("q")).unwrap();
        assert!(matches!(
            dir.reopen_own(OsStr::new("p")),
            Err(FsError::Unsafe(Unsafe::HardLinked))
        ));
        std::fs::write(t.path().join("r"), "x").unwrap();
        std::fs::set_permissions(t.path().join("r"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(matches!(
            dir.reopen_own(OsStr::new("r")),
            Err(FsError::Unsafe(Unsafe::NotOwnerOnly))
        ));
        if effective_uid() == 0 {
            // Root can plant a file as another user: owner-only and singly linked, but not ours.
            drop(dir.create_new(OsStr::new("theirs")).unwrap());
            std::os::unix::fs::chown(t.path().join("theirs"), Some(1000), Some(1000)).unwrap();
            assert!(matches!(
                dir.reopen_own(OsStr::new("theirs")),
                Err(FsError::Unsafe(Unsafe::NotOwned))
            ));
        }
        symlink(t.path().join("r"), t.path().join("s")).unwrap();
        assert!(matches!(
            dir.reopen_own(OsStr::new("s")),
            Err(FsError::Unsafe(Unsafe::Symlink))
        ));
        assert!(matches!(
            dir.open_read(OsStr::new("s")),
            Err(FsError::Unsafe(Unsafe::Symlink))
        ));
    }
}
