//! The assistant's loop, as a pure state machine.
//!
//! A turn starts with the member's message. The model answers with text or tool calls; each
//! call gets a permission decision from `switchboard-policy`; allowed calls run, calls on
//! "ask" wait for the member, refused calls go back to the model as refusals; results go back
//! to the model until it answers. [`Turn::apply`] turns each [`Event`] into [`Effect`]s.
//!
//! Architecture invariant: no IO, no clock, no async. The service's driver loads a turn, applies
//! an event, saves the new state (compare-and-swap on its version) and only then carries out
//! the effects; so whichever process saves first owns the effects, and a crash between two
//! saves never repeats a tool call.

mod machine;
mod toolbox;

pub use machine::{
    Answer, Call, CallRecord, CallStatus, Effect, Event, Out, Phase, Rejected, Settings, Target,
    ToolOutput, Turn, wrap_output,
};
pub use toolbox::{Budget, SEARCH_FUNCTIONS, Tool, Toolbox};

#[cfg(test)]
mod tests;
