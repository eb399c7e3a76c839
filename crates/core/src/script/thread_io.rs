//! A script thread's own async runtime and HTTP clients.
//!
//! A native function that waits for an HTTP answer could drive the shared runtime's
//! client with `Handle::block_on`, but the client's connection task then runs on a
//! runtime worker: every call costs a wake-up of that worker and another of the script
//! thread when the answer is in. Instead each script thread has a current-thread
//! runtime ([`block_on_here`]) and, per client, its own connections
//! ([`PerThreadClient`]), so a call runs wholly on the script thread.
//!
//! Between calls nothing polls a thread's runtime. Before each call it is let poll its
//! I/O once and run what woke, so a connection the server closed meanwhile leaves the
//! pool instead of failing the call; an idle thread does the same every
//! [`TIDY_EVERY`] ([`tidy_thread`], run by every [`ScriptPool`](super::ScriptPool)).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often an idle script thread tidies its connections ([`tidy_thread`]).
pub const TIDY_EVERY: Duration = Duration::from_secs(15);

thread_local! {
    static RUNTIME: Option<tokio::runtime::Runtime> =
        tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
    /// Set while [`block_on_here`] runs a future on this thread.
    static ON_THREAD_RUNTIME: Cell<bool> = const { Cell::new(false) };
    static CLIENTS: RefCell<Vec<(Weak<()>, reqwest::Client)>> = RefCell::default();
}

/// Runs `future` to completion on this thread, in the thread's own runtime. Gives the
/// future back when there is none to be had here (on a thread of an async runtime, or
/// when the runtime could not be built); the caller then uses the shared runtime.
pub fn block_on_here<F: Future>(future: F) -> Result<F::Output, F> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(future);
    }
    RUNTIME.with(|rt| match rt {
        Some(rt) => {
            /// Clears the flag however the run ends (a panicking script included).
            struct Running;
            impl Drop for Running {
                fn drop(&mut self) {
                    ON_THREAD_RUNTIME.set(false);
                }
            }
            ON_THREAD_RUNTIME.set(true);
            let _running = Running;
            Ok(rt.block_on(async {
                settle().await;
                future.await
            }))
        }
        None => Err(future),
    })
}

/// Waits for `future` on this thread: in the thread's own runtime when it can have one
/// ([`block_on_here`]), else by driving it with `handle`.
pub fn block_on_here_or<F: Future>(handle: &tokio::runtime::Handle, future: F) -> F::Output {
    block_on_here(future).unwrap_or_else(|future| handle.block_on(future))
}

/// Lets the thread's connections see what happened while the thread was away.
///
/// The first yield makes the runtime poll for I/O events (waking the tasks of
/// connections the server closed), the second lets the woken tasks run, so a closed
/// connection leaves its pool before the call picks one. This follows tokio 1.54's
/// current-thread scheduler; `site::external::transport`'s tests guard it.
async fn settle() {
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
}

/// Housekeeping of a script thread while it has no job: drops the clients of owners
/// gone (a redeployment builds new ones) and lets the thread's runtime run once, so its
/// connections notice closes by the server and expire. Without it those would only
/// happen at the thread's next call.
pub fn tidy_thread() {
    let _ = CLIENTS.try_with(|clients| drop_orphans(&mut clients.borrow_mut()));
    let _ = block_on_here(async {});
}

/// Drops the clients whose owner is gone.
fn drop_orphans(clients: &mut Vec<(Weak<()>, reqwest::Client)>) {
    clients.retain(|(owner, _)| owner.strong_count() > 0);
}

/// A reqwest client with one instance shared by the async runtime and one per script
/// thread: [`get`](Self::get) inside [`block_on_here`] returns this thread's.
#[derive(Clone)]
pub struct PerThreadClient {
    shared: reqwest::Client,
    make: Arc<dyn Fn() -> reqwest::Client + Send + Sync>,
    /// Names this client's per-thread instances; they are dropped (at the threads' next
    /// tidy) once every clone of this is.
    owner: Arc<()>,
}

impl std::fmt::Debug for PerThreadClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerThreadClient").finish_non_exhaustive()
    }
}

impl PerThreadClient {
    /// `make` builds the shared client now and each thread's when it first needs one.
    pub fn new(make: impl Fn() -> reqwest::Client + Send + Sync + 'static) -> PerThreadClient {
        PerThreadClient {
            shared: make(),
            make: Arc::new(make),
            owner: Arc::new(()),
        }
    }

    /// The client for where the caller runs: this thread's inside [`block_on_here`],
    /// the shared one elsewhere. Call it where the request runs (inside its future),
    /// not where the future is made.
    pub fn get(&self) -> reqwest::Client {
        if !ON_THREAD_RUNTIME.get() {
            return self.shared.clone();
        }
        CLIENTS
            .try_with(|clients| {
                let mut clients = clients.borrow_mut();
                let owner = Arc::downgrade(&self.owner);
                if let Some((_, found)) = clients.iter().find(|(o, _)| o.ptr_eq(&owner)) {
                    return found.clone();
                }
                drop_orphans(&mut clients);
                let made = (self.make)();
                clients.push((owner, made.clone()));
                made
            })
            .unwrap_or_else(|_| self.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> usize {
        CLIENTS.with(|c| c.borrow().len())
    }

    #[test]
    fn each_thread_has_its_own_client_and_tidying_drops_those_of_owners_gone() {
        crate::tls::install_crypto_provider();
        std::thread::spawn(|| {
            let client = PerThreadClient::new(reqwest::Client::new);
            let _ = client.get();
            assert_eq!(held(), 0, "outside block_on_here the shared client is used");
            block_on_here(async { client.get() }).unwrap_or_else(|_| panic!("no runtime"));
            block_on_here(async { client.get() }).unwrap_or_else(|_| panic!("no runtime"));
            assert_eq!(held(), 1, "one client per owner and thread");
            tidy_thread();
            assert_eq!(held(), 1, "a live owner keeps its client");
            drop(client);
            tidy_thread();
            assert_eq!(held(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_thread_runtime_is_refused_inside_an_async_runtime() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _entered = rt.enter();
        assert!(block_on_here(async { 1 }).is_err());
    }
}
