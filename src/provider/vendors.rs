//! Built-in provider names: an OpenAI-compatible vendor is a row of data, and each other
//! wire protocol has its row too.

/// A built-in provider.
#[derive(Clone, Copy, Debug)]
pub struct Vendor {
    pub name: &'static str,
    pub kind: &'static str,
    pub base_url: &'static str,
    /// The variables that may hold the key, the preferred one first; empty for servers
    /// that need none.
    pub key_envs: &'static [&'static str],
    /// Whether a call without a key is pointless (hosted APIs).
    pub key_required: bool,
    /// The model seated when the panel is built from the keys that are set.
    pub default_model: &'static str,
    /// `max_completion_tokens` (OpenAI itself, whatever its base URL) instead of `max_tokens`.
    pub max_completion_tokens: bool,
}

/// A hosted vendor (a call without its key is pointless), OpenAI-compatible unless `kind`
/// says otherwise; `.local()` makes it a server on this machine.
const fn vendor(
    name: &'static str,
    base_url: &'static str,
    key_envs: &'static [&'static str],
    default_model: &'static str,
) -> Vendor {
    Vendor {
        name,
        kind: "openai",
        base_url,
        key_envs,
        key_required: true,
        default_model,
        max_completion_tokens: false,
    }
}

impl Vendor {
    /// A server on this machine: a key is optional.
    const fn local(self) -> Vendor {
        Vendor {
            key_required: false,
            ..self
        }
    }
}

pub const VENDORS: &[Vendor] = &[
    Vendor {
        max_completion_tokens: true,
        ..vendor(
            "openai",
            "https://api.openai.com/v1",
            &["OPENAI_API_KEY"],
            "gpt-4o-mini",
        )
    },
    Vendor {
        kind: "anthropic",
        ..vendor(
            "anthropic",
            "https://api.anthropic.com",
            &["ANTHROPIC_API_KEY"],
            "claude-haiku-4-5",
        )
    },
    // The Gemini SDK prefers GOOGLE_API_KEY when both are set (docs/providers.md, Built-in names).
    Vendor {
        kind: "gemini",
        ..vendor(
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta",
            &["GOOGLE_API_KEY", "GEMINI_API_KEY"],
            "gemini-2.5-flash",
        )
    },
    // The resource URL comes from AZURE_OPENAI_ENDPOINT; the model is the deployment name.
    Vendor {
        kind: "azure",
        ..vendor("azure", "", &["AZURE_OPENAI_API_KEY"], "gpt-4o-mini")
    },
    vendor(
        "openrouter",
        "https://openrouter.ai/api/v1",
        &["OPENROUTER_API_KEY"],
        "meta-llama/llama-3.3-70b-instruct",
    ),
    vendor(
        "groq",
        "https://api.groq.com/openai/v1",
        &["GROQ_API_KEY"],
        "llama-3.3-70b-versatile",
    ),
    vendor(
        "together",
        "https://api.together.xyz/v1",
        &["TOGETHER_API_KEY"],
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    ),
    vendor(
        "deepseek",
        "https://api.deepseek.com",
        &["DEEPSEEK_API_KEY"],
        "deepseek-chat",
    ),
    vendor(
        "mistral",
        "https://api.mistral.ai/v1",
        &["MISTRAL_API_KEY"],
        "mistral-small-latest",
    ),
    vendor(
        "xai",
        "https://api.x.ai/v1",
        &["XAI_API_KEY"],
        "grok-3-mini",
    ),
    // Native /api/chat; OLLAMA_HOST moves it; OLLAMA_API_KEY only for ollama.com.
    Vendor {
        kind: "ollama",
        ..vendor(
            "ollama",
            "http://localhost:11434",
            &["OLLAMA_API_KEY"],
            "llama3.2",
        )
        .local()
    },
    vendor("lmstudio", "http://localhost:1234/v1", &[], "local-model").local(),
    vendor(
        "vllm",
        "http://localhost:8000/v1",
        &["VLLM_API_KEY"],
        "default",
    )
    .local(),
    vendor(
        "llamacpp",
        "http://localhost:8080/v1",
        &["LLAMACPP_API_KEY"],
        "default",
    )
    .local(),
    Vendor {
        name: "mock",
        kind: "mock",
        base_url: "",
        key_envs: &[],
        key_required: false,
        default_model: "echo",
        max_completion_tokens: false,
    },
];

pub fn find(name: &str) -> Option<&'static Vendor> {
    VENDORS.iter().find(|v| v.name == name)
}
