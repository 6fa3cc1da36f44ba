//! What every command is run with: the settings, the sync log, and the databases and client
//! they name.

use super::MemoryError;
use super::client::RemoteClient;
use super::settings::Settings;
use super::staging::Staging;
use super::synclog::SyncLog;

/// What every command carries: the settings and the sync log.
pub struct Ctx {
    pub settings: Settings,
    pub log: SyncLog,
}

impl Ctx {
    pub fn new(settings: Settings) -> Ctx {
        let echo = settings.verbose || settings.debug;
        if settings.debug {
            crate::log::set_level(3);
        }
        let log = SyncLog::new(&settings.log_file, echo);
        Ctx { settings, log }
    }

    pub fn staging(&self) -> Result<Staging, MemoryError> {
        Ok(Staging::open(&self.settings.staging_db)?)
    }

    pub fn client(&self) -> Result<RemoteClient, MemoryError> {
        Ok(RemoteClient::new(&self.settings)?)
    }

    /// Logs a failure to the sync log and passes it on.
    pub(super) fn fail<T>(&self, op: &str, e: MemoryError) -> Result<T, MemoryError> {
        self.log.line("error", &format!("{op}: {e}"));
        Err(e)
    }
}
