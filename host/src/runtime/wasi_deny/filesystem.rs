//! `wasi:filesystem` (types and preopens of WASI 0.2.12) with no files
//! behind it: `get-directories` offers one directory, `/`, which is a
//! host-side marker; every operation on it (open, stat, read a directory,
//! ...) is answered `access` (the interface's access-denied code) and
//! counted. No other descriptor and no directory listing can exist.

// The generated items carry the WIT's doc comments.
#![allow(missing_docs)]

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use self::wasi::filesystem::preopens;
use self::wasi::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode,
    Filesize, MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};
use super::{Denier, Deny, GetDenier, quoted};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wasi:filesystem/imports@0.2.12",
    imports: { default: trappable },
    require_store_data_send: true,
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:filesystem/types.descriptor": crate::runtime::wasi_deny::filesystem::NoDirectory,
        "wasi:filesystem/types.directory-entry-stream": crate::runtime::wasi_deny::filesystem::NoListing,
    },
});

/// The one directory a plugin is offered, `/`: a marker with nothing
/// behind it.
pub struct NoDirectory;

/// What a directory listing would be: no value exists (reading a directory
/// is refused), so no handle of it can reach a method.
pub enum NoListing {}

/// The path the one preopened directory is offered under.
const ROOT: &str = "/";

type Answer<T> = wasmtime::Result<Result<T, ErrorCode>>;
type Dir = Resource<NoDirectory>;

impl Denier<'_> {
    /// Count a refusal of `what` and answer `access`.
    fn refuse_fs<T>(&mut self, what: impl FnOnce() -> String) -> Answer<T> {
        self.denials.record(what);
        Ok(Err(ErrorCode::Access))
    }
}

pub(super) fn add_to_linker<T: Send + 'static>(
    l: &mut Linker<T>,
    denier: GetDenier<T>,
) -> wasmtime::Result<()> {
    types::add_to_linker::<_, Deny>(l, denier)?;
    preopens::add_to_linker::<_, Deny>(l, denier)
}

impl preopens::Host for Denier<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Dir, String)>> {
        // Offered (rather than none) so a plugin's file access reaches the
        // host and is answered `access` and counted, instead of failing
        // inside the guest's libc as a missing file.
        Ok(vec![(self.table.push(NoDirectory)?, ROOT.to_string())])
    }
}

impl types::Host for Denier<'_> {
    fn filesystem_error_code(
        &mut self,
        _err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        // No stream ever comes from a file, so no stream error is a file's.
        Ok(None)
    }
}

/// Descriptor methods that take no path: refused as `<name>`.
macro_rules! refused {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(
            fn $name(&mut self, _dir: Dir $(, $arg: $ty)*) -> Answer<$out> {
                $(let _ = $arg;)*
                self.refuse_fs(|| stringify!($name).replace('_', "-"))
            }
        )*
    };
}

/// Descriptor methods whose first string argument is a path: refused as
/// `<name> "<path>"`.
macro_rules! refused_at {
    ($($name:ident($($pre:ident: $pty:ty,)* @$path:ident $(, $arg:ident: $ty:ty)*) -> $out:ty;)*) => {
        $(
            fn $name(
                &mut self,
                _dir: Dir,
                $($pre: $pty,)*
                $path: String
                $(, $arg: $ty)*
            ) -> Answer<$out> {
                $(let _ = $pre;)*
                $(let _ = $arg;)*
                self.refuse_fs(|| format!("{} {}", stringify!($name).replace('_', "-"), quoted(&$path)))
            }
        )*
    };
}

impl types::HostDescriptor for Denier<'_> {
    refused! {
        read_via_stream(offset: Filesize) -> Resource<DynInputStream>;
        write_via_stream(offset: Filesize) -> Resource<DynOutputStream>;
        append_via_stream() -> Resource<DynOutputStream>;
        advise(offset: Filesize, length: Filesize, advice: Advice) -> ();
        sync_data() -> ();
        get_flags() -> DescriptorFlags;
        get_type() -> DescriptorType;
        set_size(size: Filesize) -> ();
        set_times(access: NewTimestamp, modification: NewTimestamp) -> ();
        read(length: Filesize, offset: Filesize) -> (Vec<u8>, bool);
        write(buffer: Vec<u8>, offset: Filesize) -> Filesize;
        read_directory() -> Resource<NoListing>;
        sync() -> ();
        stat() -> DescriptorStat;
        metadata_hash() -> MetadataHashValue;
    }

    refused_at! {
        create_directory_at(@path) -> ();
        stat_at(flags: PathFlags, @path) -> DescriptorStat;
        set_times_at(
            flags: PathFlags,
            @path,
            access: NewTimestamp,
            modification: NewTimestamp
        ) -> ();
        link_at(flags: PathFlags, @old_path, new_dir: Dir, new_path: String) -> ();
        open_at(
            flags: PathFlags,
            @path,
            open_flags: OpenFlags,
            descriptor_flags: DescriptorFlags
        ) -> Dir;
        readlink_at(@path) -> String;
        remove_directory_at(@path) -> ();
        rename_at(@old_path, new_dir: Dir, new_path: String) -> ();
        symlink_at(@old_path, new_path: String) -> ();
        unlink_file_at(@path) -> ();
        metadata_hash_at(flags: PathFlags, @path) -> MetadataHashValue;
    }

    fn is_same_object(&mut self, _dir: Dir, _other: Dir) -> wasmtime::Result<bool> {
        // Every descriptor is the one marker directory.
        Ok(true)
    }

    fn drop(&mut self, dir: Dir) -> wasmtime::Result<()> {
        self.table.delete(dir)?;
        Ok(())
    }
}

impl types::HostDirectoryEntryStream for Denier<'_> {
    fn read_directory_entry(
        &mut self,
        listing: Resource<NoListing>,
    ) -> Answer<Option<DirectoryEntry>> {
        match *self.table.get(&listing)? {}
    }

    fn drop(&mut self, listing: Resource<NoListing>) -> wasmtime::Result<()> {
        match *self.table.get(&listing)? {}
    }
}
