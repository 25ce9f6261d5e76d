// Loaded with `node --require` before the deploy client: points its API base (built by
// getApiUrl from TWILIO_EDGE/TWILIO_REGION, no base-URL setting) at ENGINE_API_ROOT, for the
// API host and the upload host alike. The client calls it through the module's exports, so
// replacing the export here is seen by every later call.
const path = require('path');
const apiClient = require(path.join(
  process.env.SERVERLESS_API_HOME, 'node_modules', '@twilio-labs', 'serverless-api', 'dist', 'api', 'utils', 'api-client.js',
));
apiClient.getApiUrl = (_config, _product = 'serverless', apiVersion = 'v1') => `${process.env.ENGINE_API_ROOT}/${apiVersion}`;
