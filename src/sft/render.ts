/**
 * A conversation as token ids and a loss mask. The text is the model's chat template applied to the plain turns
 * (or ChatML); which characters an assistant wrote is found by rendering growing prefixes of the conversation, as
 * transformers' assistant masks and verl's multi-turn SFT dataset do: turn i spans from the end of
 * render(turns[:i], add_generation_prompt) to the end of render(turns[:i+1]). The trainable part of a turn is its
 * content and the end-of-turn marker (`<|im_end|>`), not the newline the template puts after it: a model stops
 * at the marker and never writes that newline.
 *
 * Pieces are tokenized one by one (never the whole text at once), as a rollout builds a sequence token-in/token-out:
 * the prompt, each sampled turn, each injected block on its own.
 */
import { RecallError } from "../errors.ts";
import { renderChatML, type ChatMessage } from "../rollout/chatml.ts";
import type { RecallTokenizer } from "../data/tokenizer.ts";

export interface RenderedConversation {
  ids: number[];
  /** 1 where token t is trained on (predicted by position t − 1); mask[0] is always 0. */
  mask: number[];
}

export interface RenderOptions {
  /** "model": the tokenizer's chat template (ChatML when it has none); "chatml": plain ChatML. */
  template: "model" | "chatml";
  /** Train on every token, not only the assistant turns. */
  trainOnPrompt: boolean;
}

interface Piece {
  text: string;
  trained: boolean;
}

/** The conversation's text in pieces, each marked trained (assistant content + end marker) or not. */
export function conversationPieces(messages: readonly ChatMessage[], tokenizer: RecallTokenizer, o: RenderOptions, at: string): Piece[] {
  const useTemplate = o.template === "model" && tokenizer.hasChatTemplate;
  const render = (turns: readonly ChatMessage[], generationPrompt: boolean) =>
    useTemplate ? tokenizer.applyChatTemplate(turns.map((m) => ({ role: m.role, content: m.content })), { addGenerationPrompt: generationPrompt }) : renderChatML(turns, generationPrompt);
  const full = render(messages, false);
  const pieces: Piece[] = [];
  let done = 0; // characters of `full` already in pieces
  messages.forEach((m, i) => {
    if (m.role !== "assistant") return;
    const before = render(messages.slice(0, i), true);
    const after = render(messages.slice(0, i + 1), false);
    if (!after.startsWith(before) || !full.startsWith(after) || before.length < done) {
      throw new RecallError(`${at}: the chat template does not render this conversation as a sequence of growing prefixes, so assistant turns cannot be located`, {
        hint: "use --chat_template chatml",
      });
    }
    const turn = after.slice(before.length);
    const trained = turn.replace(/\s+$/, "");
    pieces.push({ text: full.slice(done, before.length), trained: false });
    pieces.push({ text: trained, trained: true });
    done = before.length + trained.length;
  });
  pieces.push({ text: full.slice(done), trained: false });
  return pieces.filter((p) => p.text !== "");
}

/** Token ids and loss mask of a conversation (every token trained with `trainOnPrompt`, except the first). */
export function renderConversation(messages: readonly ChatMessage[], tokenizer: RecallTokenizer, o: RenderOptions, at: string): RenderedConversation {
  const ids: number[] = [];
  const mask: number[] = [];
  for (const p of conversationPieces(messages, tokenizer, o, at)) {
    const piece = tokenizer.encode(p.text, { addSpecialTokens: false });
    for (const id of piece) {
      ids.push(id);
      mask.push(p.trained || o.trainOnPrompt ? 1 : 0);
    }
  }
  if (mask.length > 0) mask[0] = 0; // nothing predicts the first token
  return { ids, mask };
}
