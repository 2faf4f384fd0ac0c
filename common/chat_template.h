// Single-turn chat prompts in the format a model was fine-tuned on. There is no Jinja engine: the
// model's HF chat_template is recognised by its family's markers and rendered by that family's
// rules, giving the string HF apply_chat_template(add_generation_prompt=True) gives for one
// optional system message and one user message.
#pragma once
#include "common/status.h"
#include "common/tokenizer.h"

typedef enum chat_format {
    CHAT_FORMAT_NONE = 0, // plain: the user text as is (no recognisable template)
    CHAT_FORMAT_CHATML,   // <|im_start|>user\n{u}<|im_end|>\n<|im_start|>assistant\n
    CHAT_FORMAT_OASST,    // <|prompter|>{u}<eos><|assistant|> (OpenAssistant, FalconLite)
    CHAT_FORMAT_LLAMA2,   // <bos>[INST] <<SYS>>\n{s}\n<</SYS>>\n\n{u} [/INST]
    CHAT_FORMAT_ZEPHYR,   // <|user|>\n{u}<eos>\n<|assistant|>\n
} chat_format;

typedef struct chat_template chat_template;

// The template of a model directory: <dir>/chat_template.jinja, else tokenizer_config.json's
// chat_template (a string, or HF's list of named templates: "default"), recognised by markers
// (<|prompter|>, <|im_start|>, [INST], <|user|>), with bos/eos from tokenizer_config.json. Without
// a template the vocabulary of tok (may be NULL) decides: <|prompter|> + <|assistant|> ->
// OpenAssistant as FalconLite's client writes it, <|im_start|> -> ChatML. A template of another
// family gives CHAT_FORMAT_NONE rather than a guess. Errors: unreadable or malformed files.
fl_code chat_template_load(const char *model_dir, const tokenizer *tok, chat_template **out,
                           fl_error *err);
// A preset by name: "none", "chatml" (no system turn), "smollm2" (ChatML with SmolLM2's default
// system turn), "oasst" (FalconLite's <|endoftext|>). FL_EINVAL naming the choices otherwise.
fl_code chat_template_create(const char *name, chat_template **out, fl_error *err);
void chat_template_free(chat_template *t);

chat_format chat_template_format(const chat_template *t);
// "none", "chatml", "oasst", "llama2", "zephyr".
const char *chat_template_kind_name(const chat_template *t);
// The system message used when the caller gives none (ChatML templates such as SmolLM2's insert
// one), or NULL.
const char *chat_template_default_system(const chat_template *t);

// The prompt for one user message after an optional system message (NULL: the template's
// default, if any; "" is an empty system message, as in HF), ending with the generation prompt
// (malloc'd). CHAT_FORMAT_NONE returns user as is and ignores system.
fl_code chat_template_apply(const chat_template *t, const char *system, const char *user,
                            char **prompt, fl_error *err);
