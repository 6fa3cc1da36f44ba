//! The Windows service host: `memsync run --windows-service` hands its thread to the service
//! manager's dispatcher, which calls back on a thread of its own; there memsync reports
//! Running, runs the `run` command's body, and reports Stopped with its exit code. The
//! manager's Stop and Shutdown reach that body as SIGTERM would on Unix
//! (`crate::signals::service_stop`): what is committed is shipped, then the process exits.
//! A non-zero exit code is reported as a service-specific error, so the failure actions
//! `install-service` sets (restart after 10 s) apply.

use std::ffi::OsString;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::{define_windows_service, service_dispatcher};

use super::{ServiceError, WINDOWS_NAME};

/// What the service runs; returns the process's exit code.
pub type Body = Box<dyn FnOnce() -> i32 + Send>;

/// Handed from [`run`] to the dispatcher's thread (the callback takes no context).
static BODY: Mutex<Option<Body>> = Mutex::new(None);
/// Stack of the thread the body runs on (what Rust gives a program's main thread on Unix).
const STACK: usize = 8 << 20;

/// The body's exit code, back to [`run`].
static CODE: AtomicI32 = AtomicI32::new(1);

/// For the control handler to report StopPending (it is registered before the handle exists).
static HANDLE: OnceLock<ServiceStatusHandle> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Runs `body` as the service [`WINDOWS_NAME`]; returns when the service has stopped, with
/// the body's exit code. Fails when the process was not started by the service manager.
pub fn run(body: Body) -> Result<i32, ServiceError> {
    *BODY.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
    service_dispatcher::start(WINDOWS_NAME, ffi_service_main)
        .map_err(|e| ServiceError::Host(e.to_string()))?;
    Ok(CODE.load(Ordering::SeqCst))
}

fn status(state: ServiceState, code: i32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: match state {
            ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            _ => ServiceControlAccept::empty(),
        },
        exit_code: match code {
            0 => ServiceExitCode::Win32(0),
            c => ServiceExitCode::ServiceSpecific(c as u32),
        },
        checkpoint: 0,
        // A stop ships what is committed first; the manager waits this long before it
        // reports the service as hung.
        wait_hint: Duration::from_secs(30),
        process_id: None,
    }
}

fn service_main(_args: Vec<OsString>) {
    let handler = |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            // Said at once: `stop-service` and the manager then know a stop is under way.
            if let Some(h) = HANDLE.get() {
                let _ = h.set_service_status(status(ServiceState::StopPending, 0));
            }
            crate::signals::service_stop();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = match service_control_handler::register(WINDOWS_NAME, handler) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("registering with the Windows service manager: {e}");
            return;
        }
    };
    let _ = HANDLE.set(handle);
    let _ = handle.set_service_status(status(ServiceState::Running, 0));
    let body = BODY.lock().unwrap_or_else(|p| p.into_inner()).take();
    // On a thread of memsync's own: the dispatcher's thread has the executable's default
    // stack (1 MB), which replication's startup outgrows in a debug build (a stack overflow
    // ends the process without a word in the log).
    let code = body.map_or(1, |b| {
        std::thread::Builder::new()
            .name("service".into())
            .stack_size(STACK)
            .spawn(b)
            .map_or(1, |t| t.join().unwrap_or(101))
    });
    CODE.store(code, Ordering::SeqCst);
    let _ = handle.set_service_status(status(ServiceState::Stopped, code));
}

/// Waits until the service `name` reports Stopped (at once when it is not installed): `sc
/// stop` returns while the service still ships what is committed.
pub fn await_stopped(name: &str, timeout: Duration) -> Result<(), ServiceError> {
    use windows_service::service::ServiceAccess;
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    /// ERROR_SERVICE_DOES_NOT_EXIST
    const NO_SERVICE: i32 = 1060;
    let host = |e: windows_service::Error| ServiceError::Host(format!("{name}: {e}"));
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(host)?;
    let service = match manager.open_service(name, ServiceAccess::QUERY_STATUS) {
        Ok(s) => s,
        Err(windows_service::Error::Winapi(e)) if e.raw_os_error() == Some(NO_SERVICE) => {
            return Ok(());
        }
        Err(e) => return Err(host(e)),
    };
    let t0 = Instant::now();
    while service.query_status().map_err(host)?.current_state != ServiceState::Stopped {
        if t0.elapsed() >= timeout {
            return Err(ServiceError::StopTimeout {
                service: name.into(),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
