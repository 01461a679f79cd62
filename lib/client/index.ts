/**
 * `fastify-dbos/client`: the workflows of an app's database from another
 * process, without Fastify and without workflow code. See docs/Guides/client.md.
 */
export { WorkflowClient, type WorkflowClientOptions, type ClientHandle } from './workflow-client.js'
export type { EnqueueOptions, ForkOptions, DeleteFinishedOptions, GetEventOptions, ReadStreamOptions, SendOptions } from '../calls.js'
export type { ListFilter } from '../list-filter.js'
export type { WorkflowStatus, WorkflowStatusName, StepInfo, WorkflowPage, EventInfo, StreamValue } from '../status.js'
export * from '../errors.js'
