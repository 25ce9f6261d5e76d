// Drives @twilio-labs/serverless-api (what twilio-run deploy and the Twilio CLI use) for the tests:
//   node --require preload.js client.js deploy PROJECT_DIR  → {serviceSid, environmentSid, buildSid, domain}
//   node --require preload.js client.js activate BUILD_SID SERVICE_SID → {buildSid}
//   node --require preload.js client.js logs SERVICE_SID → {messages: [...]}
// Prints one JSON line; exits 1 with the error on stderr.
const path = require('path');
const fs = require('fs');
const { TwilioServerlessApiClient } = require(path.join(
  process.env.SERVERLESS_API_HOME, 'node_modules', '@twilio-labs', 'serverless-api',
));

const client = new TwilioServerlessApiClient({
  accountSid: process.env.ENGINE_ACCOUNT_SID,
  authToken: process.env.ENGINE_AUTH_TOKEN,
});

async function main() {
  const [verb, ...args] = process.argv.slice(2);
  if (verb === 'deploy') {
    const cwd = args[0];
    const pkgJson = JSON.parse(fs.readFileSync(path.join(cwd, 'package.json'), 'utf8'));
    const result = await client.deployLocalProject({
      cwd, pkgJson, serviceName: 'npm-shop', functionsEnv: 'dev', runtime: 'node22',
      env: { GREETING: process.env.GREETING || 'hello' }, overrideExistingService: true,
    });
    return { serviceSid: result.serviceSid, environmentSid: result.environmentSid, buildSid: result.buildSid, domain: result.domain };
  }
  if (verb === 'activate') {
    const result = await client.activateBuild({
      buildSid: args[0], serviceSid: args[1], targetEnvironment: 'dev', env: { GREETING: process.env.GREETING || 'hello' },
    });
    return { buildSid: result.buildSid };
  }
  if (verb === 'logs') {
    const logs = await client.getLogs({ serviceSid: args[0], environment: 'dev' });
    return { messages: logs.map((entry) => entry.message) };
  }
  throw new Error(`unknown verb ${verb}`);
}

main().then(
  (out) => { process.stdout.write(JSON.stringify(out) + '\n'); },
  (err) => { process.stderr.write(`${err && err.stack ? err.stack : err}\n${err && err.body ? JSON.stringify(err.body) : ''}\n`); process.exit(1); },
);
