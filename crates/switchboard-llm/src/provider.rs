//! The chat-completions provider: one POST per request over the [`SafeClient`], its answer read
//! as an event stream and turned into [`ModelEvent`]s.

use std::collections::VecDeque;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Response};
use switchboard_domain::ProviderKind;
use switchboard_net::{SafeClient, read_limited};
use url::Url;
use zeroize::Zeroizing;

use crate::assemble::ReplyBuilder;
use crate::errors::{
    MAX_ERROR_BODY_BYTES, broken_stream, from_net, provider_message, scrub, status_error,
};
use crate::sse::{SseDecoder, SseError};
use crate::wire::{Chunk, TokenLimitField, request_body};
use crate::{
    ApiKey, ChatModel, ChatRequest, Limits, LlmError, ModelEvent, ProviderConfig, ReplyStream,
};

/// A provider speaking OpenAI's chat completions or Mistral's variant of them.
#[derive(Debug)]
pub(crate) struct ChatCompletions {
    client: SafeClient,
    kind: ProviderKind,
    /// `{base_url}/chat/completions`, or why the base URL cannot have a path appended.
    endpoint: Result<Url, String>,
    model: String,
    api_key: Option<ApiKey>,
    limits: Limits,
    limit_field: TokenLimitField,
}

impl ChatCompletions {
    pub(crate) fn new(client: SafeClient, config: ProviderConfig, limits: Limits) -> Self {
        let limit_field = if config.kind == ProviderKind::OpenAi
            && config.base_url.host_str() == Some("api.openai.com")
        {
            TokenLimitField::MaxCompletionTokens
        } else {
            TokenLimitField::MaxTokens
        };
        Self {
            client,
            kind: config.kind,
            endpoint: endpoint(&config.base_url),
            model: config.model,
            api_key: config.api_key,
            limits,
            limit_field,
        }
    }

    async fn open(&self, request: &ChatRequest) -> Result<ReplyStream, LlmError> {
        let endpoint = self
            .endpoint
            .as_ref()
            .map_err(|e| LlmError::Config(e.clone()))?;
        let body = request_body(self.kind, &self.model, request, self.limit_field);
        let mut builder = self
            .client
            .request(Method::POST, endpoint)
            .map_err(from_net)?
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .json(&body);
        if let Some(key) = &self.api_key {
            let text = Zeroizing::new(format!("Bearer {}", key.expose()));
            let mut value = HeaderValue::from_str(&text).map_err(|_| {
                LlmError::Config("the API key holds characters a header cannot carry".into())
            })?;
            // Keeps the value out of hyper's and reqwest's own debug output.
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        tracing::debug!(
            provider = %self.kind,
            host = endpoint.host_str().unwrap_or_default(),
            model = %self.model,
            messages = request.messages.len(),
            tools = request.tools.len(),
            "asking the model"
        );
        let response = self.client.send(builder).await.map_err(from_net)?;
        let status = response.status();
        if !status.is_success() {
            let err = error_answer(response).await;
            tracing::debug!(provider = %self.kind, status = status.as_u16(), error = %err, "the model provider refused");
            return Err(err);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type.starts_with("application/json") {
            return Err(LlmError::Protocol(
                "the provider answered with JSON instead of an event stream".into(),
            ));
        }
        Ok(reply_stream(response, self.limits, self.api_key.clone()))
    }
}

#[async_trait::async_trait]
impl ChatModel for ChatCompletions {
    async fn stream(&self, request: &ChatRequest) -> Result<ReplyStream, LlmError> {
        self.open(request)
            .await
            .map_err(|e| scrub(e, self.api_key.as_ref()))
    }
}

/// `{base}/chat/completions`, whether or not `base` ends in a slash.
fn endpoint(base: &Url) -> Result<Url, String> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| "the model provider's base URL cannot take a path".to_owned())?
        .pop_if_empty()
        .push("chat")
        .push("completions");
    Ok(url)
}

/// The error for a non-2xx answer, with the provider's message from its body.
async fn error_answer(response: Response) -> LlmError {
    let status = response.status();
    let plain_text = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    let message = match read_limited(response, MAX_ERROR_BODY_BYTES).await {
        Ok(body) => provider_message(&body, plain_text),
        Err(_) => None,
    }
    .unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_lowercase()
    });
    status_error(status.as_u16(), message)
}

/// How long, and how much of it, the rest of an answer after `[DONE]` is read: normally just
/// the end of the body, which follows at once.
const END_WAIT: Duration = Duration::from_millis(250);
const END_BYTES: usize = 64 * 1024;

/// Reads a complete answer to the end of its body, so that its connection goes back to the
/// client's pool for the next request instead of being closed (against a real provider, a new
/// connection is a new TLS handshake). An answer that goes on past the limits is dropped,
/// which closes its connection.
async fn read_to_end(mut response: Response) {
    let mut left = END_BYTES;
    let rest = async {
        while let Ok(Some(bytes)) = response.chunk().await {
            left = left.saturating_sub(bytes.len());
            if left == 0 {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(END_WAIT, rest).await;
}

/// What the stream holds between polls.
struct StreamState {
    /// The answer being read; `None` once the reply is complete.
    response: Option<Response>,
    decoder: SseDecoder,
    reply: Option<ReplyBuilder>,
    /// Events decoded but not yet handed out.
    queue: VecDeque<Result<ModelEvent, LlmError>>,
    /// The reply, complete at `[DONE]`, handed out once the body has ended.
    done: Option<Result<ModelEvent, LlmError>>,
    api_key: Option<ApiKey>,
}

/// The reply as a stream. Dropping it before the reply is complete drops the response, which
/// closes the connection (or resets the HTTP/2 stream), so the provider stops generating; a
/// complete reply's connection is kept for the next request (see [`read_to_end`]).
fn reply_stream(response: Response, limits: Limits, api_key: Option<ApiKey>) -> ReplyStream {
    let state = StreamState {
        response: Some(response),
        // A line holds one chunk, whose text is part of the reply; the slack leaves room for
        // the JSON around it.
        decoder: SseDecoder::new(limits.max_reply_bytes.saturating_add(64 * 1024)),
        reply: Some(ReplyBuilder::new(limits.max_reply_bytes)),
        queue: VecDeque::new(),
        done: None,
        api_key,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.queue.pop_front() {
                let item = item.map_err(|e| scrub(e, state.api_key.as_ref()));
                return Some((item, state));
            }
            if let Some(done) = state.done.take() {
                if let Some(response) = state.response.take() {
                    read_to_end(response).await;
                }
                state.queue.push_back(done);
                continue;
            }
            let response = state.response.as_mut()?;
            match response.chunk().await {
                Ok(Some(bytes)) => state.feed(&bytes),
                Ok(None) => state.end(),
                Err(err) => state.fail(broken_stream(err)),
            }
        }
    }))
}

impl StreamState {
    fn feed(&mut self, bytes: &[u8]) {
        let mut events = Vec::new();
        let decoded = self.decoder.feed(bytes, &mut events);
        self.handle(events);
        // Bytes after `[DONE]` do not matter, however broken.
        if let (Err(err), Some(_)) = (decoded, &self.reply) {
            let message = match err {
                SseError::TooLong(limit) => {
                    format!("an event of the stream is longer than the limit of {limit} bytes")
                }
                SseError::NotUtf8 => "the event stream is not UTF-8".to_owned(),
            };
            self.fail(LlmError::Protocol(message));
        }
    }

    /// The answer ended without `[DONE]`: a reply whose finish reason came is complete (some
    /// OpenAI-compatible servers leave `[DONE]` out), any other was cut off.
    fn end(&mut self) {
        self.response = None;
        let mut events = Vec::new();
        self.decoder.finish(&mut events);
        self.handle(events);
        let Some(reply) = self.reply.take() else {
            return;
        };
        if reply.has_finished() {
            self.queue.push_back(reply.build().map(ModelEvent::Done));
        } else {
            self.fail(LlmError::Unreachable(
                "the reply was cut off before it finished".into(),
            ));
        }
    }

    fn handle(&mut self, events: Vec<String>) {
        for data in events {
            let Some(reply) = self.reply.as_mut() else {
                return;
            };
            if data.trim() == "[DONE]" {
                let reply = self.reply.take().expect("checked above");
                self.done = Some(reply.build().map(ModelEvent::Done));
                return;
            }
            let chunk = match serde_json::from_str::<Chunk>(&data) {
                Ok(chunk) => chunk,
                Err(e) => {
                    // serde_json's message may quote the chunk; give only where it broke.
                    return self.fail(LlmError::Protocol(format!(
                        "a chunk of the reply is not the expected JSON (column {})",
                        e.column()
                    )));
                }
            };
            if let Some(error) = &chunk.error {
                let message = provider_message(error.to_string().as_bytes(), false)
                    .unwrap_or_else(|| "no reason given".into());
                return self.fail(LlmError::Unreachable(format!(
                    "the provider broke off the reply: {message}"
                )));
            }
            match reply.apply(chunk) {
                Ok(Some(event)) => self.queue.push_back(Ok(event)),
                Ok(None) => {}
                Err(err) => return self.fail(err),
            }
        }
    }

    /// Ends the stream with `err`, after the events already decoded.
    fn fail(&mut self, err: LlmError) {
        self.queue.push_back(Err(err));
        self.reply = None;
        self.response = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_appended_to_the_base_path() {
        for base in ["https://api.openai.com/v1", "https://api.openai.com/v1/"] {
            assert_eq!(
                endpoint(&base.parse().unwrap()).unwrap().as_str(),
                "https://api.openai.com/v1/chat/completions"
            );
        }
        assert_eq!(
            endpoint(&"http://localhost:11434/v1?x=1".parse().unwrap())
                .unwrap()
                .as_str(),
            "http://localhost:11434/v1/chat/completions?x=1"
        );
        assert!(endpoint(&"mailto:a@b.c".parse().unwrap()).is_err());
    }
}
