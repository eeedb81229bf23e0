//! stub
#[derive(Debug, Clone, Default)]
pub struct CronJobControllerConfig {}
#[derive(Debug, thiserror::Error)]
pub enum Error {}
pub async fn run(
    _rw: super::ReadWrite,
    _c: CronJobControllerConfig,
    _s: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    Ok(())
}
