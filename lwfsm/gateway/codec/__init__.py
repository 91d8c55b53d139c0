"""One codec per wire protocol: Chat Completions (`chat`), Anthropic Messages (`messages`), Responses
(`responses`), and what they share (`common`). Pure: no HTTP, no SDK."""
