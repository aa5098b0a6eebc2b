/**
 * Chat templates: the Jinja template a Hugging Face model ships in tokenizer_config.json (or
 * chat_template.jinja), rendered with `@huggingface/jinja` the way transformers renders it.
 * @module
 */
import { Template } from "@huggingface/jinja";
import { describeValue, TokenizerError } from "../gpu/errors.ts";
import { readTokenizerConfig, type Tokenizer } from "./tokenizer.ts";

/** One message of a conversation. Keys besides role and content reach the template as given. */
export interface ChatMessage {
  /** "system", "user", "assistant", or whatever roles the template knows. */
  role: string;
  /** The message's text. */
  content: string;
  /** Anything else the template reads (a name, tool calls). */
  [key: string]: unknown;
}

/** Options of {@link applyChatTemplate}. */
export interface ChatTemplateOptions {
  /** End with the header that starts the assistant's turn. Default true. */
  addGenerationPrompt?: boolean;
  /** `bos_token` in the template (Tokenizer.bosToken). */
  bosToken?: string;
  /** `eos_token` in the template (Tokenizer.eosToken). */
  eosToken?: string;
  /** More template variables, by their names in the template (`tools`, `date_string`...). */
  variables?: Record<string, unknown>;
  /** Where the template came from, for error messages. */
  source?: string;
}

/**
 * Renders a conversation with a chat template, as transformers' `apply_chat_template(...,
 * tokenize=False)` does. Templates usually write the BOS token themselves, so encode the result
 * with `{ addSpecialTokens: false }`.
 *
 * @example
 * ```ts
 * import { applyChatTemplate } from "@ahead/mtp";
 * const template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}" +
 *   "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
 * const prompt = applyChatTemplate(template, [{ role: "user", content: "Hi!" }], {
 *   eosToken: "</s>",
 * });
 * console.log(prompt); // "<|user|>Hi!</s><|assistant|>"
 * ```
 */
export function applyChatTemplate(
  template: string,
  messages: readonly ChatMessage[],
  options: ChatTemplateOptions = {},
): string {
  const source = options.source ?? "the chat template";
  if (typeof template !== "string") {
    throw new TokenizerError(
      `${source} must be a string of Jinja source, got ${describeValue(template)}`,
    );
  }
  checkMessages(messages);
  let parsed: Template;
  try {
    parsed = new Template(template);
  } catch (e) {
    throw new TokenizerError(
      `${source} does not parse as a Jinja template (${messageOf(e)}): the template uses ` +
        `syntax @huggingface/jinja lacks, or is damaged`,
    );
  }
  try {
    return parsed.render({
      ...options.variables,
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: options.bosToken ?? "",
      eos_token: options.eosToken ?? "",
    });
  } catch (e) {
    // raise_exception() in a template lands here too: the template's own words say what it
    // refused (e.g. roles that do not alternate).
    throw new TokenizerError(`${source} failed to render the messages: ${messageOf(e)}`);
  }
}

/**
 * The chat template of a model folder (path or URL) or of a loaded tokenizer. Throws a
 * {@link TokenizerError} when the model has none, which base models usually do not.
 */
export async function chatTemplateOf(model: string | URL | Tokenizer): Promise<string> {
  let template: string | undefined;
  let source: string;
  let names: string[] = [];
  if (typeof model === "string" || model instanceof URL) {
    const config = await readTokenizerConfig(model);
    template = config.chatTemplate;
    source = config.source;
    names = Object.keys(config.chatTemplates);
  } else {
    template = model.chatTemplate;
    source = model.source;
  }
  if (template !== undefined) return template;
  const named = names.length > 0
    ? ` (its chat_template list has ${names.map((n) => JSON.stringify(n)).join(", ")} but no ` +
      `"default")`
    : "";
  throw new TokenizerError(
    `${source}: the model has no chat template${named} (looked for chat_template in ` +
      `tokenizer_config.json and for chat_template.jinja); it is probably a base model: pass a ` +
      `plain prompt instead of messages`,
  );
}

function checkMessages(messages: unknown): void {
  if (!Array.isArray(messages)) {
    throw new TokenizerError(
      `messages must be an array of { role, content } objects, got ${describeValue(messages)}`,
    );
  }
  if (messages.length === 0) {
    throw new TokenizerError("messages is empty: pass at least one { role, content } message");
  }
  messages.forEach((m: unknown, i) => {
    if (m === null || typeof m !== "object" || Array.isArray(m)) {
      throw new TokenizerError(
        `messages[${i}] must be an object with string role and content, got ${describeValue(m)}`,
      );
    }
    for (const key of ["role", "content"]) {
      const v = (m as Record<string, unknown>)[key];
      if (typeof v !== "string") {
        throw new TokenizerError(`messages[${i}].${key} must be a string, got ${describeValue(v)}`);
      }
    }
  });
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
