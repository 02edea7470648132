"""An MCP server protected by OAuth (mcp 2.3 in resource-server mode), for the OAuth tests.

Run it as `python protected_server.py --issuer http://127.0.0.1:A [--port 0] [--scope mcp]`, or
with static bearer tokens instead of an issuer:
`python protected_server.py --static-token alice=TOKEN_A --static-token bob=TOKEN_B [--port 0]`.
It listens on 127.0.0.1 (port 0 lets the system pick), then prints `PEER_READY <url>` on stdout
with its MCP URL, `http://127.0.0.1:PORT/mcp` (streamable HTTP, both protocol generations).

With `--static-token SUBJECT=TOKEN` (repeatable) the server is a plain bearer-protected server,
as one that hands out API tokens is: a request must carry one of those exact tokens, whose
SUBJECT the tools then report; without one `/mcp` answers 401 with `WWW-Authenticate: Bearer
error="invalid_token", ...` and no resource metadata, and no OAuth document is served.

- Without a valid token, `/mcp` answers 401 with
  `WWW-Authenticate: Bearer ..., resource_metadata="http://127.0.0.1:PORT/.well-known/oauth-protected-resource/mcp"`.
- That address serves the RFC 9728 protected-resource metadata: the MCP URL as `resource`, the
  issuer as its only authorization server, and the required scopes as `scopes_supported`.
- A token is accepted when it is a JWT access token (RFC 9068, `typ: at+jwt`) signed by one of the
  issuer's keys (from the `jwks_uri` of its metadata), issued by that issuer, unexpired, for this
  MCP URL as audience (the RFC 8707 resource), and carrying every required scope.
- Tools: `whoami` returns the token's subject; `token_info` returns its client, scopes and
  audience as JSON; `echo` returns its text.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import socket
import time
import urllib.request
from typing import Any

import anyio
import jwt
import uvicorn

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

logger = logging.getLogger("protected_server")

# Signature algorithms oidc-provider may use for access tokens; never "none" or HMAC here.
ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]
# The issuer's keys are fetched again at most this often when a token names an unknown key.
JWKS_REFRESH_SECONDS = 5.0

# Loopback only, and never through a proxy that the environment may name.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str) -> Any:
    with _opener.open(url, timeout=10) as response:
        return json.load(response)


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class JwtVerifier:
    """Checks JWT access tokens against the issuer's published keys (the SDK's TokenVerifier)."""

    def __init__(self, issuer: str, resource: str) -> None:
        self.issuer = issuer
        self.resource = resource
        self._keys: jwt.PyJWKSet | None = None
        self._fetched_at = 0.0

    def _metadata(self) -> dict[str, Any]:
        # RFC 8414 first, then OpenID discovery; oidc-provider serves both.
        last_error: Exception | None = None
        for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            try:
                return _get_json(self.issuer.rstrip("/") + path)
            except Exception as error:  # noqa: BLE001 - try the next document
                last_error = error
        raise RuntimeError(f"no authorization server metadata at {self.issuer}: {last_error}")

    def _fetch_keys(self) -> jwt.PyJWKSet:
        metadata = self._metadata()
        if not _same_url(metadata.get("issuer", ""), self.issuer):
            raise RuntimeError(f"the metadata names issuer {metadata.get('issuer')!r}, not {self.issuer!r}")
        self._fetched_at = time.monotonic()
        return jwt.PyJWKSet.from_dict(_get_json(metadata["jwks_uri"]))

    def _key_for(self, kid: str | None) -> jwt.PyJWK:
        if self._keys is None:
            self._keys = self._fetch_keys()
        matches = [key for key in self._keys.keys if kid is None or key.key_id == kid]
        if not matches and time.monotonic() - self._fetched_at > JWKS_REFRESH_SECONDS:
            self._keys = self._fetch_keys()
            matches = [key for key in self._keys.keys if kid is None or key.key_id == kid]
        if not matches:
            raise jwt.InvalidTokenError(f"no key {kid!r} at the issuer")
        return matches[0]

    def _verify(self, token: str) -> AccessToken | None:
        try:
            header = jwt.get_unverified_header(token)
            # RFC 9068 section 4: the resource server checks the type, so an ID token cannot pass.
            if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
                raise jwt.InvalidTokenError(f"typ {header.get('typ')!r} is not at+jwt")
            key = self._key_for(header.get("kid"))
            claims = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "sub", "aud"], "verify_aud": False},
            )
        except Exception as error:  # noqa: BLE001 - any failure is an invalid token
            logger.warning("refused a token: %s", error)
            return None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        resource = next((aud for aud in audiences if _same_url(aud, self.resource)), None)
        if resource is None:
            logger.warning("refused a token for audience %r", claims["aud"])
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=resource,
            subject=str(claims["sub"]),
            claims=claims,
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        # The key fetch blocks, so it runs off the event loop.
        return await anyio.to_thread.run_sync(self._verify, token)


class StaticVerifier:
    """Accepts exactly the configured bearer tokens, each standing for its subject."""

    def __init__(self, tokens: dict[str, str]) -> None:
        # token -> subject
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        subject = next((s for t, s in self.tokens.items() if hmac.compare_digest(t, token)), None)
        if subject is None:
            logger.warning("refused a static token")
            return None
        return AccessToken(token=token, client_id="", scopes=[], subject=subject)


def build_server(issuer: str | None, resource: str, scopes: list[str], static_tokens: dict[str, str]) -> MCPServer:
    if static_tokens:
        # No resource server URL: no protected-resource metadata and no `resource_metadata` in
        # the challenge, so nothing points a client at OAuth. The issuer is required by the SDK's
        # settings but never published.
        verifier: Any = StaticVerifier(static_tokens)
        auth = AuthSettings(
            issuer_url=issuer or "http://127.0.0.1:9",
            resource_server_url=None,
            required_scopes=[],
        )
        instructions = "A test server that needs a static bearer token."
    else:
        assert issuer is not None
        verifier = JwtVerifier(issuer, resource)
        auth = AuthSettings(
            issuer_url=issuer,
            resource_server_url=resource,
            required_scopes=scopes,
            validate_token_resource=True,
        )
        instructions = "A test server that needs an OAuth access token."
    server = MCPServer(
        "switchboard-protected",
        version="1.0.0",
        instructions=instructions,
        token_verifier=verifier,
        auth=auth,
    )

    @server.tool(description="Returns the subject (`sub`) of the access token of this request.", structured_output=False)
    def whoami() -> str:
        token = get_access_token()
        return token.subject if token and token.subject else ""

    @server.tool(description="Returns the client, scopes and audience of the access token as JSON.", structured_output=False)
    def token_info() -> str:
        token = get_access_token()
        if token is None:
            return "{}"
        return json.dumps(
            {"sub": token.subject, "client_id": token.client_id, "scopes": token.scopes, "aud": token.resource}
        )

    @server.tool(description="Returns the given text unchanged.", structured_output=False)
    def echo(text: str) -> str:
        return text

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer", help="the authorization server's issuer URL")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--scope", action="append", help="a scope every token needs (repeatable; default mcp)")
    parser.add_argument(
        "--static-token",
        action="append",
        default=[],
        metavar="SUBJECT=TOKEN",
        help="accept this static bearer token, standing for SUBJECT, instead of OAuth (repeatable)",
    )
    args = parser.parse_args()
    static_tokens: dict[str, str] = {}
    for pair in args.static_token:
        subject, sep, token = pair.partition("=")
        if not sep or not subject or not token:
            parser.error(f"--static-token expects SUBJECT=TOKEN, got {pair!r}")
        static_tokens[token] = subject
    if (args.issuer is None) == (not static_tokens):
        parser.error("give either --issuer or at least one --static-token")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    # Bound first, so that the resource URL (and with it the metadata) names the real port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    resource = f"http://127.0.0.1:{port}/mcp"

    server = build_server(args.issuer, resource, args.scope or ["mcp"], static_tokens)
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="info")
    print(f"PEER_READY {resource}", flush=True)
    anyio.run(lambda: uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
