//! libtorch's CUDA half, loaded only when a GPU could be used.
//!
//! The PyPI torch wheel is a CUDA build: `libtorch_cuda.so` pulls in cuBLAS, cuDNN, NCCL and a
//! dozen more libraries. Linked into the binary, they made every run pay about 0.3 s of wall
//! time to map and relocate them before `main`, GPU or not (`docs/performance.md`, eighth
//! round). The binary links only `libtorch_cpu.so`; this module opens `libtorch_cuda.so` at run
//! time, before libtorch is first asked about CUDA. libtorch decides once per process whether
//! CUDA exists (its CUDA hooks), so the library must be open before that first question, and a
//! process that has asked cannot change its mind.

use std::ffi::CStr;
use std::sync::OnceLock;

/// What opening libtorch's CUDA library found; decided once per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CudaLibrary {
    /// `libtorch_cuda.so` is open: libtorch can see CUDA devices if the driver shows any.
    Loaded,
    /// `model.device` = "auto" and no NVIDIA driver library (`libcuda.so.1`) could be opened, so
    /// no GPU can be used and the CUDA library was not opened.
    NoDriver,
    /// The torch build has no `libtorch_cuda.so` (a CPU-only libtorch), or it failed to open.
    Missing,
}

static STATE: OnceLock<CudaLibrary> = OnceLock::new();

/// Opens libtorch's CUDA library for a device that may be a GPU (`auto`: only when the NVIDIA
/// driver library opens, as without it CUDA cannot run). Call it before libtorch is first asked
/// about CUDA; the first call decides for the whole process. CPU models do not call it, so a
/// CPU model built first (the reference check) leaves the decision to the configured device.
pub(crate) fn prepare(driver_required: bool) -> CudaLibrary {
    *STATE.get_or_init(|| {
        if driver_required && !open(c"libcuda.so.1", libc::RTLD_LAZY | libc::RTLD_LOCAL) {
            CudaLibrary::NoDriver
        } else if open(c"libtorch_cuda.so", libc::RTLD_LAZY | libc::RTLD_GLOBAL) {
            // Found through the binary's rpath (build.rs) or LD_LIBRARY_PATH.
            CudaLibrary::Loaded
        } else {
            CudaLibrary::Missing
        }
    })
}

/// dlopen, never closed: libtorch keeps pointers into the library for the process's life.
fn open(name: &CStr, flags: libc::c_int) -> bool {
    // SAFETY: `name` is a valid C string; the handle is deliberately leaked.
    !unsafe { libc::dlopen(name.as_ptr(), flags) }.is_null()
}

impl CudaLibrary {
    /// Why no CUDA device is usable, for the `model.device` = "cuda" error; with the library
    /// loaded, libtorch's own reason (`failure`, asked only then).
    pub(crate) fn why_no_device(self, failure: impl FnOnce() -> String) -> String {
        match self {
            CudaLibrary::Loaded => {
                format!("libtorch's CUDA library is loaded; libtorch says: {}", failure())
            }
            CudaLibrary::NoDriver => "no NVIDIA driver library (libcuda.so.1) was found".into(),
            CudaLibrary::Missing => {
                "this libtorch has no CUDA library (libtorch_cuda.so): install a CUDA build of torch"
                    .into()
            }
        }
    }
}
