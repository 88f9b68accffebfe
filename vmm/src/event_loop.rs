//! The VMM's event loop: rust-vmm `event-manager` dispatching device eventfds (a passthrough
//! device's VFIO interrupt and request eventfds, console input) to their subscribers.
//!
//! A KVM machine runs it on its own thread; the device harness runs it by hand, one dispatch
//! pass at a time, so tests stay deterministic. Both add and remove subscribers the same way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use devices::bus::lock;
use event_manager::{
    EventManager, MutEventSubscriber, RemoteEndpoint, SubscriberId, SubscriberOps,
};

/// A subscriber the event loop can own.
pub type Subscriber = Box<dyn MutEventSubscriber + Send>;

/// An error from the event loop.
#[derive(Debug, thiserror::Error)]
pub enum EventLoopError {
    /// The event manager could not be created or failed.
    #[error("event loop: {op} failed")]
    Manager {
        /// What was being done.
        op: &'static str,
        /// The event-manager error.
        #[source]
        source: event_manager::Error,
    },
    /// The event loop thread could not be started.
    #[error("failed to start the event loop thread")]
    Thread(#[source] std::io::Error),
    /// The loop runs on its own thread; it cannot be driven by hand.
    #[error("the event loop runs on its own thread and cannot be dispatched by hand")]
    NotManual,
    /// The loop thread is gone (it stopped or panicked).
    #[error("the event loop thread has stopped")]
    Stopped,
}

fn manager_error(op: &'static str) -> impl FnOnce(event_manager::Error) -> EventLoopError {
    move |source| EventLoopError::Manager { op, source }
}

enum Mode {
    Threaded {
        endpoint: RemoteEndpoint<Subscriber>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    },
    Manual(Mutex<EventManager<Subscriber>>),
}

/// The event loop.
pub struct EventLoop {
    mode: Mode,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Threaded { .. } => "threaded",
            Mode::Manual(_) => "manual",
        };
        f.debug_struct("EventLoop").field("mode", &mode).finish()
    }
}

impl EventLoop {
    /// Starts an event loop on its own thread.
    pub fn spawn() -> Result<Self, EventLoopError> {
        let mut manager =
            EventManager::<Subscriber>::new().map_err(manager_error("creating the manager"))?;
        let endpoint = manager.remote_endpoint();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("event-loop".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::SeqCst) {
                    if let Err(e) = manager.run() {
                        if !matches!(&e, event_manager::Error::Epoll(e) if e.errno() == libc::EINTR)
                        {
                            log::error!("event loop stopped: {e}");
                            break;
                        }
                    }
                }
            })
            .map_err(EventLoopError::Thread)?;
        Ok(Self {
            mode: Mode::Threaded {
                endpoint,
                stop,
                thread: Some(thread),
            },
        })
    }

    /// An event loop that only dispatches when [`dispatch_pending`](Self::dispatch_pending) is
    /// called.
    pub fn manual() -> Result<Self, EventLoopError> {
        let manager =
            EventManager::<Subscriber>::new().map_err(manager_error("creating the manager"))?;
        Ok(Self {
            mode: Mode::Manual(Mutex::new(manager)),
        })
    }

    /// Adds a subscriber; its `init` registers the eventfds it watches.
    pub fn add_subscriber(&self, subscriber: Subscriber) -> Result<SubscriberId, EventLoopError> {
        match &self.mode {
            Mode::Threaded { endpoint, .. } => endpoint
                .call_blocking(move |ops| {
                    Ok::<_, event_manager::Error>(ops.add_subscriber(subscriber))
                })
                .map_err(|e| channel_error("adding a subscriber", e)),
            Mode::Manual(manager) => Ok(lock(manager).add_subscriber(subscriber)),
        }
    }

    /// Removes a subscriber and hands it back.
    pub fn remove_subscriber(&self, id: SubscriberId) -> Result<Subscriber, EventLoopError> {
        match &self.mode {
            Mode::Threaded { endpoint, .. } => endpoint
                .call_blocking(move |ops| ops.remove_subscriber(id))
                .map_err(|e| channel_error("removing a subscriber", e)),
            Mode::Manual(manager) => lock(manager)
                .remove_subscriber(id)
                .map_err(manager_error("removing a subscriber")),
        }
    }

    /// Dispatches the events ready now, without waiting; returns how many there were. Only for a
    /// [`manual`](Self::manual) loop.
    pub fn dispatch_pending(&self) -> Result<usize, EventLoopError> {
        match &self.mode {
            Mode::Threaded { .. } => Err(EventLoopError::NotManual),
            Mode::Manual(manager) => lock(manager)
                .run_with_timeout(0)
                .map_err(manager_error("dispatching events")),
        }
    }

    /// Stops the loop thread and drops the subscribers. Also done on drop.
    pub fn shutdown(&mut self) {
        if let Mode::Threaded {
            endpoint,
            stop,
            thread,
        } = &mut self.mode
        {
            if let Some(thread) = thread.take() {
                stop.store(true, Ordering::SeqCst);
                if let Err(e) = endpoint.kick() {
                    log::error!("failed to wake the event loop to stop it: {e}");
                    return;
                }
                if thread.join().is_err() {
                    log::error!("the event loop thread panicked");
                }
            }
        }
    }
}

fn channel_error(op: &'static str, e: event_manager::Error) -> EventLoopError {
    match e {
        event_manager::Error::ChannelSend | event_manager::Error::ChannelRecv => {
            EventLoopError::Stopped
        }
        source => EventLoopError::Manager { op, source },
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use event_manager::{EventOps, EventSet, Events};
    use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

    use super::*;

    /// Reports each eventfd count it drains on a channel.
    struct Counter {
        fd: EventFd,
        seen: mpsc::Sender<u64>,
    }

    impl MutEventSubscriber for Counter {
        fn process(&mut self, _events: Events, _ops: &mut EventOps) {
            if let Ok(n) = self.fd.read() {
                let _ = self.seen.send(n);
            }
        }

        fn init(&mut self, ops: &mut EventOps) {
            ops.add(Events::new(&self.fd, EventSet::IN)).unwrap();
        }
    }

    fn counter() -> (Subscriber, EventFd, mpsc::Receiver<u64>) {
        let fd = EventFd::new(EFD_NONBLOCK).unwrap();
        let trigger = fd.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        (Box::new(Counter { fd, seen: tx }), trigger, rx)
    }

    #[test]
    fn threaded_loop_delivers_events_to_subscribers() {
        let event_loop = EventLoop::spawn().unwrap();
        let (sub, trigger, seen) = counter();
        event_loop.add_subscriber(sub).unwrap();
        trigger.write(3).unwrap();
        assert_eq!(seen.recv().unwrap(), 3);
    }

    #[test]
    fn manual_loop_dispatches_only_when_asked() {
        let event_loop = EventLoop::manual().unwrap();
        let (sub, trigger, seen) = counter();
        let id = event_loop.add_subscriber(sub).unwrap();
        trigger.write(1).unwrap();
        assert_eq!(seen.try_recv(), Err(mpsc::TryRecvError::Empty));
        assert_eq!(event_loop.dispatch_pending().unwrap(), 1);
        assert_eq!(seen.try_recv().unwrap(), 1);
        event_loop.remove_subscriber(id).unwrap();
        trigger.write(1).unwrap();
        assert_eq!(event_loop.dispatch_pending().unwrap(), 0);
    }

    #[test]
    fn removed_subscriber_is_handed_back_and_shutdown_joins() {
        let mut event_loop = EventLoop::spawn().unwrap();
        let (sub, _trigger, _seen) = counter();
        let id = event_loop.add_subscriber(sub).unwrap();
        event_loop.remove_subscriber(id).unwrap();
        event_loop.shutdown();
        assert!(matches!(
            event_loop.add_subscriber(counter().0),
            Err(EventLoopError::Stopped)
        ));
    }

    #[test]
    fn threaded_loop_cannot_be_dispatched_by_hand() {
        let event_loop = EventLoop::spawn().unwrap();
        assert!(matches!(
            event_loop.dispatch_pending(),
            Err(EventLoopError::NotManual)
        ));
    }
}
