//! Built-in provider names: an OpenAI-compatible vendor is a row of data.

/// A built-in provider.
#[derive(Clone, Copy, Debug)]
pub struct Vendor {
    pub name: &'static str,
    pub kind: &'static str,
    pub base_url: &'static str,
    /// The variable holding the key; None for servers that need none.
    pub key_env: Option<&'static str>,
    /// Whether a call without a key is pointless (hosted APIs).
    pub key_required: bool,
    /// The model seated when the panel is built from the keys that are set.
    pub default_model: &'static str,
    /// `max_completion_tokens` (OpenAI itself) instead of `max_tokens`.
    pub max_completion_tokens: bool,
}

const fn hosted(
    name: &'static str,
    base_url: &'static str,
    key_env: &'static str,
    default_model: &'static str,
) -> Vendor {
    Vendor {
        name,
        kind: "openai",
        base_url,
        key_env: Some(key_env),
        key_required: true,
        default_model,
        max_completion_tokens: false,
    }
}

const fn local(
    name: &'static str,
    base_url: &'static str,
    key_env: Option<&'static str>,
    default_model: &'static str,
) -> Vendor {
    Vendor {
        name,
        kind: "openai",
        base_url,
        key_env,
        key_required: false,
        default_model,
        max_completion_tokens: false,
    }
}

pub const VENDORS: &[Vendor] = &[
    Vendor {
        max_completion_tokens: true,
        ..hosted(
            "openai",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            "gpt-4o-mini",
        )
    },
    hosted(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
        "meta-llama/llama-3.3-70b-instruct",
    ),
    hosted(
        "groq",
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        "llama-3.3-70b-versatile",
    ),
    hosted(
        "together",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    ),
    hosted(
        "deepseek",
        "https://api.deepseek.com",
        "DEEPSEEK_API_KEY",
        "deepseek-chat",
    ),
    hosted(
        "mistral",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        "mistral-small-latest",
    ),
    hosted("xai", "https://api.x.ai/v1", "XAI_API_KEY", "grok-3-mini"),
    local("ollama", "http://localhost:11434/v1", None, "llama3.2"),
    local("lmstudio", "http://localhost:1234/v1", None, "local-model"),
    local(
        "vllm",
        "http://localhost:8000/v1",
        Some("VLLM_API_KEY"),
        "default",
    ),
    local(
        "llamacpp",
        "http://localhost:8080/v1",
        Some("LLAMACPP_API_KEY"),
        "default",
    ),
    Vendor {
        name: "mock",
        kind: "mock",
        base_url: "",
        key_env: None,
        key_required: false,
        default_model: "echo",
        max_completion_tokens: false,
    },
];

pub fn find(name: &str) -> Option<&'static Vendor> {
    VENDORS.iter().find(|v| v.name == name)
}

/// Ollama's OpenAI-compatible base URL from `OLLAMA_HOST` (`host:port`, or a URL).
pub fn ollama_base(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let with_scheme = if host.starts_with("http://") || host.starts_with("https://") {
        host.to_string()
    } else {
        format!("http://{host}")
    };
    let with_port = if with_scheme
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
    {
        with_scheme
    } else {
        format!("{with_scheme}:11434")
    };
    format!("{with_port}/v1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_forms() {
        assert_eq!(ollama_base("127.0.0.1:11500"), "http://127.0.0.1:11500/v1");
        assert_eq!(ollama_base("http://gpu-box"), "http://gpu-box:11434/v1");
        assert_eq!(
            ollama_base("https://o.example:443/"),
            "https://o.example:443/v1"
        );
        assert_eq!(ollama_base("0.0.0.0"), "http://0.0.0.0:11434/v1");
    }
}
