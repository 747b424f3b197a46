//! NDI: whether the NDI runtime (`libndi.so.6`, proprietary, installed by the NDI Tools or a
//! vendor package; no file of it in this repository) can be loaded on this machine. The
//! receiver itself is not built yet; the live service reports the kind as missing or not built.

use std::ffi::{CStr, CString};

/// The library the NDI 6 runtime installs.
pub const RUNTIME: &str = "libndi.so.6";

/// Loads and unloads the runtime: `Err` says why it cannot be loaded (the loader's words).
pub fn runtime() -> Result<(), String> {
    let mut tried = Vec::new();
    let mut candidates = vec![RUNTIME.to_string()];
    if let Ok(dir) = std::env::var("NDI_RUNTIME_DIR_V6") {
        candidates.insert(0, format!("{}/{RUNTIME}", dir.trim_end_matches('/')));
    }
    for c in candidates {
        let Ok(name) = CString::new(c.clone()) else {
            continue;
        };
        // SAFETY: dlopen with a NUL-terminated name; the handle, when one comes back, is closed
        // at once and never used. Loading runs the library's initialisers, as any loader would.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
        if !handle.is_null() {
            // SAFETY: a handle dlopen returned, closed once.
            unsafe { libc::dlclose(handle) };
            return Ok(());
        }
        // SAFETY: dlerror returns null or a NUL-terminated message owned by the loader, read
        // here before any other dl call on this thread.
        let why = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "not found".to_string()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        tried.push(why);
    }
    Err(format!(
        "the NDI runtime {RUNTIME} cannot be loaded ({}); install the NDI 6 runtime or set \
         NDI_RUNTIME_DIR_V6",
        tried.join("; ")
    ))
}
