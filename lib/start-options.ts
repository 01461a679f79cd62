/** What a caller may say about a workflow it starts. */

export interface StartOptions {
  /** Use this id instead of a generated one. Starting again with the same id returns the same workflow. */
  workflowId?: string
  /** Stored with the workflow and filterable in list(). Set from dbos-request-id by the Fastify plugin. */
  requestId?: string | null
}
