"""The HTTP gateway (`lwfsm serve`, the `gateway` extra): OpenAI Chat Completions and Anthropic
Messages in front of the turn core. `lwfsm.gateway.app` needs Starlette and httpx; the pure parts
(`identity`, `codec`, `store`) need nothing. Importing this package alone loads nothing heavy."""

__all__: list[str] = []
