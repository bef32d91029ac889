// The AI SDK's OpenAI-compatible provider against Genie's /v1, as an app would use it.
//
//   node openai_compatible.mjs <genie base url> <api key> <agent handle>
//
// 1. generateText with a tool the AI SDK itself executes (a client tool to Genie): the
//    model calls it, the SDK runs it and sends its result back, the model answers.
// 2. generateObject with a JSON schema: Genie forwards it as response_format json_schema.
// Prints {text, steps, toolResults, object} as JSON on stdout; any error exits non-zero.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, jsonSchema, stepCountIs, tool } from "ai";

async function main() {
  const [baseUrl, apiKey, agent] = process.argv.slice(2);
  const genie = createOpenAICompatible({
    name: "genie",
    baseURL: `${baseUrl}/v1`,
    apiKey,
    supportsStructuredOutputs: true,
  });

  const calls = [];
  const weather = tool({
    description: "The weather in a city.",
    inputSchema: jsonSchema({
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
      additionalProperties: false,
    }),
    execute: async ({ city }) => {
      calls.push(city);
      return { city, forecast: "sunny" };
    },
  });
  const answered = await generateText({
    model: genie(agent),
    prompt: "What is the weather in Paris?",
    tools: { weather },
    stopWhen: stepCountIs(3),
  });

  const described = await generateObject({
    model: genie(agent),
    prompt: "Describe a cat.",
    schema: jsonSchema({
      type: "object",
      properties: { name: { type: "string" }, age: { type: "integer" } },
      required: ["name", "age"],
      additionalProperties: false,
    }),
  });

  process.stdout.write(
    JSON.stringify({
      text: answered.text,
      steps: answered.steps.length,
      toolCalls: calls,
      object: described.object,
    }),
  );
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
});
