//! The user's request to stop (the first Ctrl-C), as a future that every phase of the
//! run can wait on: polled again after it fired, it stays fired instead of panicking.

use std::future::Future;
use std::pin::Pin;

pub(super) struct Interrupt<'a> {
    future: Pin<&'a mut dyn Future<Output = ()>>,
    fired: bool,
}

impl<'a> Interrupt<'a> {
    /// Polls `future` once right away: a Ctrl-C listener replaces the default handler
    /// (which kills the process) only when first polled, and a Ctrl-C between two phases
    /// must not kill the run.
    pub(super) async fn armed(future: Pin<&'a mut dyn Future<Output = ()>>) -> Interrupt<'a> {
        let mut this = Interrupt {
            future,
            fired: false,
        };
        tokio::select! {
            biased;
            () = this.future.as_mut() => this.fired = true,
            () = std::future::ready(()) => {}
        }
        this
    }

    /// Whether the user asked to stop.
    pub(super) fn fired(&self) -> bool {
        self.fired
    }

    /// Resolves when the user asks to stop; never, once it has.
    pub(super) async fn wait(&mut self) {
        if self.fired {
            return std::future::pending().await;
        }
        self.future.as_mut().await;
        self.fired = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fired_interrupt_stays_fired_and_is_not_polled_again() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let future = async {
            let _ = rx.await;
        };
        tokio::pin!(future);
        let mut stop = Interrupt::armed(future).await;
        assert!(!stop.fired());
        tx.send(()).unwrap();
        stop.wait().await;
        assert!(stop.fired());
        let again = tokio::time::timeout(std::time::Duration::from_millis(10), stop.wait()).await;
        assert!(again.is_err(), "wait() resolved twice");
    }
}
