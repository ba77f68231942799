//! webrtc-streams (docs to come)
#![warn(missing_docs)]

pub mod data_channel;
mod driver;
pub mod error;
pub mod event;
mod peer_connection;
pub mod runtime;
pub mod stream;

pub use data_channel::{DataChannel, DataChannelEvent, DataChannelMessage, MessageStream};
pub use error::{Error, Result};
pub use event::PeerConnectionEvent;
pub use peer_connection::{PeerConnection, PeerConnectionBuilder};
pub use rtc;
pub use stream::EventStream;
