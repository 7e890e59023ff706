//! Content-addressed blob files: `blobs/ab/abcdef…` (sha256), written tmp → fsync → rename →
//! fsync dir through `cap-std`, so a blob is either absent or complete after any crash.
//!
//! Why files and not rows: claim files reach tens of MB; keeping them out of SQLite keeps
//! the WAL small. Submissions use `put_unsynced` + one `sync` (syncfs) per group commit
//! instead of two fsyncs per file: per-file fsyncs were half the CPU of acceptance
//! (docs/PERFORMANCE.md); parallel per-file fsyncs coalesced only ~2×.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use tenken_model::Digest;
use tenken_store::{BlobStore, StoreError, digest};

pub struct FileBlobs {
    root: Dir,
    /// A plain read-only descriptor of the root (cap-std's may be `O_PATH`, which `syncfs`
    /// refuses).
    sync_fd: std::fs::File,
    tmp_seq: AtomicU64,
    pid: u32,
}

impl FileBlobs {
    /// Opens (creating) `path` as the blob root.
    pub fn open(path: &std::path::Path) -> Result<FileBlobs, StoreError> {
        std::fs::create_dir_all(path.join("tmp"))?;
        let root = Dir::open_ambient_dir(path, ambient_authority())?;
        // Leftover temporaries are writes that never got acknowledged.
        if let Ok(entries) = root.read_dir("tmp") {
            for e in entries.flatten() {
                let _ = root.remove_file(std::path::Path::new("tmp").join(e.file_name()));
            }
        }
        let sync_fd = std::fs::File::open(path)?;
        Ok(FileBlobs { root, sync_fd, tmp_seq: AtomicU64::new(0), pid: std::process::id() })
    }

    /// The blob's fan-out directory and file name: the digest's hex.
    fn rel(digest: &Digest) -> (String, String) {
        let hex = digest.hex();
        (hex[..2].to_owned(), hex)
    }

    /// Writes `bytes` under `digest` durably (no-op when already present).
    pub fn put_synced(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let (fan, name) = Self::rel(digest);
        self.root.create_dir_all(&fan)?;
        let dir = self.root.open_dir(&fan)?;
        if dir.exists(&name) {
            // Present: a previous put finished its rename. Sync the directory again so the
            // entry is durable even if that put crashed before its own directory sync.
            dir.open(".")?.sync_all()?;
            return Ok(());
        }
        let tmp_name = format!("{name}.{}.{}", self.pid, self.tmp_seq.fetch_add(1, Ordering::Relaxed));
        let tmp_dir = self.root.open_dir("tmp")?;
        let mut f = tmp_dir.create(&tmp_name)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        tmp_dir.rename(&tmp_name, &dir, &name)?;
        dir.open(".")?.sync_all()?;
        Ok(())
    }

    /// Writes `bytes` under `digest` (tmp → rename) WITHOUT syncing: the caller must call
    /// [`FileBlobs::sync`] before acknowledging anything that refers to it. Why: one
    /// `syncfs` for a whole group of uploads replaces two fsyncs per upload (group commit
    /// for blobs, as the SQLite writer does for rows).
    ///
    /// An existing file under the name is kept only if its content verifies: after a crash
    /// it may be an unsynced leftover; a verified one is either durable already or in the
    /// page cache and made durable by the next sync, and never replaced (replacing a durable
    /// blob by an unsynced one would put an acknowledged submission at risk).
    pub fn put_unsynced(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let (fan, name) = Self::rel(digest);
        self.root.create_dir_all(&fan)?;
        let dir = self.root.open_dir(&fan)?;
        if self.verified(&dir, &name, digest) {
            return Ok(());
        }
        let tmp_name = format!("{name}.{}.{}", self.pid, self.tmp_seq.fetch_add(1, Ordering::Relaxed));
        let tmp_dir = self.root.open_dir("tmp")?;
        let mut f = tmp_dir.create(&tmp_name)?;
        f.write_all(bytes)?;
        drop(f);
        // A hard link never replaces: of two identical concurrent uploads, the second finds
        // the first's file (maybe synced and acknowledged already) and keeps it. A rename
        // would swap it for an unsynced file that a crash can lose.
        let linked = tmp_dir.hard_link(&tmp_name, &dir, &name);
        let result = match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if self.verified(&dir, &name, digest) {
                    Ok(())
                } else {
                    // A damaged leftover of a crash (never acknowledged): replace it.
                    tmp_dir.rename(&tmp_name, &dir, &name).map_err(StoreError::from)
                }
            }
            Err(e) => Err(e.into()),
        };
        let _ = tmp_dir.remove_file(&tmp_name);
        result
    }

    fn verified(&self, dir: &Dir, name: &str, want: &Digest) -> bool {
        dir.read(name).is_ok_and(|existing| digest(&existing) == *want)
    }

    /// Makes every blob written so far durable: one `syncfs` of the file system holding the
    /// blob directory (data and directory entries).
    pub fn sync(&self) -> Result<(), StoreError> {
        rustix::fs::syncfs(&self.sync_fd).map_err(|e| StoreError::Io(e.into()))
    }

    /// Reads a blob and verifies its digest.
    pub fn read(&self, want: &Digest) -> Result<Vec<u8>, StoreError> {
        let (fan, name) = Self::rel(want);
        let bytes = self.root.read(std::path::Path::new(&fan).join(&name))?;
        if digest(&bytes) != *want {
            return Err(StoreError::Blob(want.to_string()));
        }
        Ok(bytes)
    }
}

impl BlobStore for FileBlobs {
    fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let d = digest(bytes);
        self.put_synced(&d, bytes)?;
        Ok(d)
    }

    fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        self.read(digest)
    }
}
