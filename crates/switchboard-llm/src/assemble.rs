//! Assembling a reply from its streamed chunks: text passed on as it comes, tool calls put
//! together from their pieces, the finish reason and usage kept for the end, and the whole
//! held within [`crate::Limits`].

use crate::wire::{Chunk, ToolCallDelta, finish_reason};
use crate::{FinishReason, LlmError, ModelEvent, Reply, ToolCall, Usage};

/// The reply so far.
#[derive(Debug)]
pub(crate) struct ReplyBuilder {
    content: String,
    calls: Vec<Slot>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    /// Bytes of text, ids, names and arguments so far.
    size: usize,
    max_size: usize,
}

/// A tool call being put together, with the stream index its pieces carry.
#[derive(Debug)]
struct Slot {
    index: Option<u64>,
    call: ToolCall,
}

impl ReplyBuilder {
    /// An empty reply that may grow to `max_size` bytes.
    pub(crate) fn new(max_size: usize) -> Self {
        Self {
            content: String::new(),
            calls: Vec::new(),
            finish: None,
            usage: None,
            size: 0,
            max_size,
        }
    }

    /// Adds one chunk, returning the text it carried (empty if none).
    pub(crate) fn apply(&mut self, chunk: Chunk) -> Result<Option<ModelEvent>, LlmError> {
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let mut text = String::new();
        // This crate asks for one choice; a server that sends others anyway is ignored there.
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                let piece = delta.text();
                self.grow(piece.len())?;
                text.push_str(&piece);
                for call in delta.tool_calls.unwrap_or_default() {
                    self.tool_piece(call)?;
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(finish_reason(&reason));
            }
        }
        if text.is_empty() {
            return Ok(None);
        }
        self.content.push_str(&text);
        Ok(Some(ModelEvent::Text(text)))
    }

    /// Whether a finish reason has arrived.
    pub(crate) fn has_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// The whole reply, once the stream ended properly.
    pub(crate) fn build(self) -> Result<Reply, LlmError> {
        let Some(mut finish) = self.finish else {
            return Err(LlmError::Protocol(
                "the reply ended without a finish reason".into(),
            ));
        };
        let mut tool_calls = Vec::with_capacity(self.calls.len());
        for (n, slot) in self.calls.into_iter().enumerate() {
            let mut call = slot.call;
            if call.name.is_empty() {
                return Err(LlmError::Protocol(format!(
                    "tool call {} has no function name",
                    n + 1
                )));
            }
            if call.id.is_empty() {
                // Some local servers leave the id out; the caller needs one to answer the
                // call, and the provider only needs it to match within the conversation.
                call.id = format!("call_{}", n + 1);
            }
            tool_calls.push(call);
        }
        // Some OpenAI-compatible servers say `stop` after calling tools; what the model did
        // is what counts.
        if finish == FinishReason::Stop && !tool_calls.is_empty() {
            finish = FinishReason::ToolCalls;
        }
        Ok(Reply {
            content: self.content,
            tool_calls,
            finish,
            usage: self.usage,
        })
    }

    /// Adds one piece of a tool call.
    ///
    /// A piece with an id not seen under its index starts a new call (OpenAI's first fragment,
    /// or one of Mistral's whole calls, which may all carry index 0); a piece without one adds
    /// to the call of its index, or to the last call when it has no index.
    fn tool_piece(&mut self, piece: ToolCallDelta) -> Result<(), LlmError> {
        let id = piece.id.filter(|id| !id.is_empty());
        let (name, arguments) = match &piece.function {
            Some(f) => (f.name.clone().filter(|n| !n.is_empty()), f.arguments_text()),
            None => (None, None),
        };
        let existing = match (&id, piece.index) {
            (Some(id), index) => self
                .calls
                .iter()
                .rposition(|s| s.index == index && s.call.id == *id),
            (None, Some(index)) => self.calls.iter().rposition(|s| s.index == Some(index)),
            (None, None) => self.calls.len().checked_sub(1),
        };
        let at = match existing {
            Some(at) => at,
            None => {
                let id = id.unwrap_or_default();
                self.grow(id.len())?;
                self.calls.push(Slot {
                    index: piece.index,
                    call: ToolCall {
                        id,
                        name: String::new(),
                        arguments: String::new(),
                    },
                });
                self.calls.len() - 1
            }
        };
        if let Some(name) = name
            && self.calls[at].call.name.is_empty()
        {
            self.grow(name.len())?;
            self.calls[at].call.name = name;
        }
        if let Some(arguments) = arguments {
            self.grow(arguments.len())?;
            self.calls[at].call.arguments.push_str(&arguments);
        }
        Ok(())
    }

    fn grow(&mut self, by: usize) -> Result<(), LlmError> {
        self.size += by;
        if self.size > self.max_size {
            return Err(LlmError::Protocol(format!(
                "the reply is larger than the limit of {} bytes",
                self.max_size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn apply_all(builder: &mut ReplyBuilder, chunks: &[Value]) -> Vec<ModelEvent> {
        chunks
            .iter()
            .filter_map(|c| {
                builder
                    .apply(serde_json::from_value(c.clone()).unwrap())
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn openai_fragments_assemble_by_index() {
        let mut b = ReplyBuilder::new(1024);
        apply_all(
            &mut b,
            &[
                json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]}}]}),
                json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}}]}}]}),
                json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"g","arguments":"{}"}}]}}]}),
                json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}),
                json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
            ],
        );
        let reply = b.build().unwrap();
        assert_eq!(
            reply.tool_calls,
            vec![
                ToolCall {
                    id: "call_a".into(),
                    name: "f".into(),
                    arguments: "{\"x\":1}".into()
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "g".into(),
                    arguments: "{}".into()
                },
            ]
        );
        assert_eq!(reply.finish, FinishReason::ToolCalls);
    }

    #[test]
    fn mistral_whole_calls_under_one_index_stay_apart() {
        let mut b = ReplyBuilder::new(1024);
        apply_all(
            &mut b,
            &[json!({"choices":[{"index":0,"delta":{"tool_calls":[
                    {"index":0,"id":"aaaaaaaaa","function":{"name":"f","arguments":{"x":1}}},
                    {"index":0,"id":"bbbbbbbbb","function":{"name":"g","arguments":"{}"}}
                ]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}})],
        );
        let reply = b.build().unwrap();
        assert_eq!(reply.tool_calls.len(), 2);
        assert_eq!(reply.tool_calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(reply.tool_calls[1].id, "bbbbbbbbb");
        assert_eq!(
            reply.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
    }

    #[test]
    fn calls_without_ids_get_one_and_stop_becomes_tool_calls() {
        let mut b = ReplyBuilder::new(1024);
        apply_all(
            &mut b,
            &[
                json!({"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}]}),
            ],
        );
        let reply = b.build().unwrap();
        assert_eq!(reply.tool_calls[0].id, "call_1");
        assert_eq!(reply.finish, FinishReason::ToolCalls);
    }

    #[test]
    fn a_call_without_a_name_is_a_protocol_error() {
        let mut b = ReplyBuilder::new(1024);
        apply_all(
            &mut b,
            &[
                json!({"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"arguments":"{}"}}]},"finish_reason":"tool_calls"}]}),
            ],
        );
        assert!(matches!(b.build(), Err(LlmError::Protocol(_))));
    }

    #[test]
    fn text_comes_out_as_it_arrives_and_other_choices_are_ignored() {
        let mut b = ReplyBuilder::new(1024);
        let events = apply_all(
            &mut b,
            &[
                json!({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}),
                json!({"choices":[{"index":0,"delta":{"content":"Hel"}},{"index":1,"delta":{"content":"nope"}}]}),
                json!({"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}),
                json!({"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}),
            ],
        );
        assert_eq!(
            events,
            vec![
                ModelEvent::Text("Hel".into()),
                ModelEvent::Text("lo".into())
            ]
        );
        let reply = b.build().unwrap();
        assert_eq!(reply.content, "Hello");
        assert_eq!(reply.finish, FinishReason::Length);
        assert_eq!(reply.usage, None);
    }

    #[test]
    fn a_reply_past_the_limit_is_refused() {
        let mut b = ReplyBuilder::new(8);
        let ok: Chunk =
            serde_json::from_value(json!({"choices":[{"delta":{"content":"12345"}}]})).unwrap();
        assert!(b.apply(ok).is_ok());
        let args: Chunk = serde_json::from_value(
            json!({"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{}"}}]}}]}),
        )
        .unwrap();
        assert!(matches!(b.apply(args), Err(LlmError::Protocol(m)) if m.contains("limit of 8")));
    }

    #[test]
    fn no_finish_reason_is_an_error() {
        let b = ReplyBuilder::new(8);
        assert!(!b.has_finished());
        assert!(matches!(b.build(), Err(LlmError::Protocol(_))));
    }
}
