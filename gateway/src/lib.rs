//! The gateway's library half: the parts of the `starledger` binary that are worth testing
//! on their own. The binary (`main.rs`) wires them to the CLI.
//!
//! - [`heleket`]: the Heleket payment provider (request and webhook signatures so far).

pub mod heleket;
