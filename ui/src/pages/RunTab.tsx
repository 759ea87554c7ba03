import { Box, Code, Heading, HStack, Stack, Text } from "@chakra-ui/react";

import { KOMOJU_RUN_DAG_IDS, type PluginProps } from "../apps";
import { useHostLanguage } from "../host";
import { messagesFor } from "../messages";

/**
 * The DAG-run tab (destination "dag_run"). Airflow 3.3 cannot restrict a React app to some DAGs, so the tab
 * appears on every run and says so when the run is not a KOMOJU cancel or refund run.
 */
export const RunTab = ({ dagId, runId }: PluginProps) => {
  const text = messagesFor(useHostLanguage());
  const isKomojuRun = dagId !== undefined && KOMOJU_RUN_DAG_IDS.includes(dagId);

  return (
    <Box p={4}>
      <Stack gap={3}>
        <Heading as="h2" size="lg">
          {text.runTitle}
        </Heading>
        <HStack gap={3}>
          <Text color="fg.muted" minW="6rem">
            dagId
          </Text>
          <Code data-testid="komoju-dag-id">{dagId ?? "—"}</Code>
        </HStack>
        <HStack gap={3}>
          <Text color="fg.muted" minW="6rem">
            runId
          </Text>
          <Code data-testid="komoju-run-id">{runId ?? "—"}</Code>
        </HStack>
        {isKomojuRun ? null : (
          <Text color="fg.warning" data-testid="komoju-not-a-komoju-run">
            {text.notKomojuDag}
          </Text>
        )}
      </Stack>
    </Box>
  );
};
