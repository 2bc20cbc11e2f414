//! NVRTC straight to a CUBIN for the device's own SM, one source per thread.
//!
//! Compiling to PTX leaves the assembly (ptxas) to the driver's JIT when the module loads, one
//! module after another; asking NVRTC for `sm_XY` code runs it inside each compile, and the
//! sources compile in parallel. On a fresh machine (no driver JIT cache) that is most of
//! `calibrate --quick`'s wall time.

use std::ffi::{CStr, CString, c_char};

use cudarc::nvrtc::{result, sys};

/// Compile `src` (named `name` in messages) for `sm_{major}{minor}` and return the CUBIN image.
/// The error carries NVRTC's log.
pub fn compile_cubin(
    src: &str,
    name: &str,
    sm: (i32, i32),
    include_paths: &[String],
) -> Result<Vec<u8>, String> {
    let csrc = CString::new(src).map_err(|_| format!("{name}: NUL byte in the source"))?;
    let cname = CString::new(name).map_err(|_| format!("{name}: NUL byte in the name"))?;
    let prog = result::create_program(&csrc, Some(&cname)).map_err(|e| format!("{name}: {e:?}"))?;
    let mut opts = vec![
        format!("--gpu-architecture=sm_{}{}", sm.0, sm.1),
        "-std=c++17".to_string(),
    ];
    opts.extend(include_paths.iter().map(|p| format!("--include-path={p}")));
    // SAFETY: `prog` was just created and is destroyed exactly once below; the option strings
    // and the buffers passed to the getters live across each call.
    unsafe {
        let compiled = result::compile_program(prog, &opts);
        let res = match compiled {
            Ok(()) => {
                let mut size = 0usize;
                sys::nvrtcGetCUBINSize(prog, &mut size)
                    .result()
                    .map_err(|e| format!("{name}: CUBIN size: {e:?}"))
                    .and_then(|()| {
                        let mut buf = vec![0u8; size];
                        sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char)
                            .result()
                            .map(|()| buf)
                            .map_err(|e| format!("{name}: CUBIN: {e:?}"))
                    })
            }
            Err(e) => {
                let log = result::get_program_log(prog)
                    .map(|l| CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned())
                    .unwrap_or_default();
                Err(format!("{e:?}\n{log}"))
            }
        };
        let _ = result::destroy_program(prog);
        res
    }
}
