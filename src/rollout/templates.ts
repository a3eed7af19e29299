/**
 * Exact strings a trained ReCall model depends on, embedded as source so they ship inside the single
 * binary (never read from disk at run time). Byte-for-byte copies of ReCall's originals; a test checks
 * them against the compatibility spec's files.
 */

/**
 * ReCall's system prompt (`re_call_template_sys`). `{func_schemas}` is replaced, verbatim, by the tools'
 * schema JSON string (plain string replacement, not Python str.format: the text itself contains braces).
 */
export const RE_CALL_TEMPLATE_SYS =
  "In this environment you have access to a set of tools you can use to assist with the user query. You may perform multiple rounds of function calls. In each round, you can call one or more functions.\n" +
  "\n" +
  "Here are available functions in JSONSchema format: \n" +
  "```json\n" +
  "{func_schemas}\n" +
  "```\n" +
  "\n" +
  "In your response, you need to first think about the reasoning process in the mind and then conduct function calling to get the information or perform the actions if needed. The reasoning process and function calling are enclosed within <think> </think> and <tool_call> </tool_call> tags. The results of the function calls will be given back to you after execution, and you can continue to call functions until you get the final answer for the user's question. Finally, if you have got the answer, enclose it within \\boxed{} with latex format and do not continue to call functions, i.e., <think> Based on the response from the function call, I get the weather information. </think> The weather in Beijing on 2025-04-01 is \\[ \\boxed{20C} \\].\n" +
  "\n" +
  "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
  "<tool_call>\n" +
  "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n" +
  "</tool_call>";

/**
 * The system prompt of ReCall's evaluation loop (`ReCall.system_prompt` in `src/re_call/inference/re_call.py`,
 * used by `recall eval`). It says the same as RE_CALL_TEMPLATE_SYS but is written as a backslash-continued
 * Python string, which leaves one byte different: its first line ends `functions. ` (with a space)
 * followed by a single newline, where the training template has `functions.` and a blank line. A model
 * is evaluated on the prompt ReCall evaluated it on, so each loop keeps its own string.
 */
export const RE_CALL_EVAL_SYS = RE_CALL_TEMPLATE_SYS.replace("one or more functions.\n\nHere are", "one or more functions. \nHere are");

/** The placeholder in RE_CALL_TEMPLATE_SYS and RE_CALL_EVAL_SYS that receives the schema string. */
export const FUNC_SCHEMAS_PLACEHOLDER = "{func_schemas}";

/** The `wikipedia_search` tool's schema string as MuSiQue rows carry it (a JSON list, indent 4). */
export const WIKIPEDIA_SEARCH_FUNC_SCHEMAS =
  "[\n" +
  "    {\n" +
  "        \"type\": \"function\",\n" +
  "        \"function\": {\n" +
  "            \"name\": \"wikipedia_search\",\n" +
  "            \"description\": \"Search Wikipedia for a given query.\",\n" +
  "            \"parameters\": {\n" +
  "                \"type\": \"object\",\n" +
  "                \"properties\": {\n" +
  "                    \"query\": {\n" +
  "                        \"type\": \"string\",\n" +
  "                        \"description\": \"Query to search for.\"\n" +
  "                    },\n" +
  "                    \"top_n\": {\n" +
  "                        \"type\": \"integer\",\n" +
  "                        \"description\": \"Number of results to return. The default value is 5.\",\n" +
  "                        \"default\": 5\n" +
  "                    }\n" +
  "                },\n" +
  "                \"required\": [\n" +
  "                    \"query\"\n" +
  "                ]\n" +
  "            }\n" +
  "        }\n" +
  "    }\n" +
  "]";

/**
 * The `wikipedia_search` tool source (Python) that MuSiQue rows carry as `env`; the sandbox runs it and
 * then evaluates the call. `<search-url-placeholder>` is replaced by the retriever base URL.
 */
export const WIKIPEDIA_SEARCH_ENV =
  "import requests\n" +
  "\n" +
  "def wikipedia_search(query: str, top_n: int = 5):\n" +
  "    url = \"<search-url-placeholder>/search\"\n" +
  "    \n" +
  "    if query == '':\n" +
  "        return 'invalid query'\n" +
  "    \n" +
  "    data = {'query': query, 'top_n': top_n}\n" +
  "    response = requests.post(url, json=data)\n" +
  "    retrieval_text = ''\n" +
  "    for line in response.json():\n" +
  "        retrieval_text += f\"{line['contents']}\\n" +
  "\\n" +
  "\"\n" +
  "    retrieval_text = retrieval_text.strip()\n" +
  "    \n" +
  "    return retrieval_text";

/** The placeholder in WIKIPEDIA_SEARCH_ENV that receives the retriever base URL. */
export const SEARCH_URL_PLACEHOLDER = "<search-url-placeholder>";
